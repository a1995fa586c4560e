/**
 * The npm package's type declarations, emitted by the TypeScript compiler from the same source:
 * `types/<path>.d.ts` for every module the entries reach, with the source's `.ts` import
 * specifiers turned into `.js` (what a Node consumer's TypeScript resolves), and one `<entry>.d.ts`
 * beside each bundled `<entry>.js`.
 */
import ts from "typescript";

export interface DeclarationEntry {
  /** The bundle's name, e.g. `index` for index.js. */
  name: string;
  /** Source path from the repository root, e.g. `src/npm.ts`. */
  source: string;
}

/** Writes the declarations into `outDir`; throws with the compiler's messages on type errors. */
export async function emitDeclarations(
  root: string,
  outDir: string,
  entries: DeclarationEntry[],
): Promise<string[]> {
  const typesDir = `${outDir}/types`;
  const program = ts.createProgram(entries.map((entry) => `${root}${entry.source}`), {
    declaration: true,
    emitDeclarationOnly: true,
    allowImportingTsExtensions: true,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2023.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
    types: [],
    strict: true,
    skipLibCheck: true,
    rootDir: `${root}src`,
    outDir: typesDir,
  });
  const written: string[] = [];
  const result = program.emit(undefined, (fileName, text) => {
    Deno.mkdirSync(fileName.slice(0, fileName.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(fileName, withJsSpecifiers(text));
    written.push(fileName.slice(outDir.length + 1));
  });
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (diagnostics.length > 0) {
    throw new Error(
      `type declarations: ${diagnostics.length} error(s):\n` +
        ts.formatDiagnostics(diagnostics, {
          getCanonicalFileName: (name) => name,
          getCurrentDirectory: () => root,
          getNewLine: () => "\n",
        }),
    );
  }
  for (const entry of entries) {
    const target = `./types/${entry.source.replace(/^src\//, "").replace(/\.ts$/, ".js")}`;
    await Deno.writeTextFile(`${outDir}/${entry.name}.d.ts`, `export * from "${target}";\n`);
    written.push(`${entry.name}.d.ts`);
  }
  return written;
}

/** `from "./flow.ts"` -> `from "./flow.js"` (relative specifiers only). */
function withJsSpecifiers(text: string): string {
  return text.replace(/(["'])(\.{1,2}\/[^"']*)\.ts\1/g, "$1$2.js$1");
}
