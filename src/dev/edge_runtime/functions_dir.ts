/**
 * Finding functions on disk: `<functionsDir>/<name>/index.ts` (or index.js/.mjs/.tsx/.jsx),
 * as `supabase functions serve` lays them out. Folders whose name starts with `_` or `.`
 * (such as `_shared`) are not functions.
 */
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const ENTRY_FILES = ["index.ts", "index.js", "index.mjs", "index.tsx", "index.jsx"];
const FUNCTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

export interface FunctionEntry {
  name: string;
  /** Absolute path of the entry module. */
  entryPath: string;
  /** `file:` URL of the entry module, for `import()`. */
  entryUrl: string;
}

/** An absolute path for a functions directory given as a path (relative to cwd) or file URL. */
export function functionsDirPath(dir: string | URL): string {
  if (dir instanceof URL || dir.startsWith("file:")) return new URL(dir).pathname;
  return isAbsolute(dir) ? dir : resolve(Deno.cwd(), dir);
}

/** `true` when `name` can be a function's name (and is safe as a path segment). */
export function isFunctionName(name: string): boolean {
  return FUNCTION_NAME.test(name);
}

/** The function's entry module, or `null` when there is no such function. */
export async function findFunction(dir: string, name: string): Promise<FunctionEntry | null> {
  if (!isFunctionName(name)) return null;
  for (const file of ENTRY_FILES) {
    const entryPath = join(dir, name, file);
    try {
      if ((await Deno.stat(entryPath)).isFile) {
        return { name, entryPath, entryUrl: pathToFileURL(entryPath).href };
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return null;
}

/** The names of all functions in `dir`, sorted. */
export async function listFunctions(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of Deno.readDir(dir)) {
    if (item.isDirectory && isFunctionName(item.name) && await findFunction(dir, item.name)) {
      names.push(item.name);
    }
  }
  return names.sort();
}
