/**
 * Builds the npm package from the same source as the Deno module: esbuild bundles the entries
 * into ESM for Node 20+ (and browsers for `./client`), with postgres.js and supabase-js left as
 * dependencies, and writes package.json beside them. Nothing in the package is written by hand.
 *
 * Entries: `.` (src/npm.ts: DSL, worker, client, compileFlow), `./client` (src/client/mod.ts:
 * no database driver, for browsers), `./dsl` (src/dsl/mod.ts). Type declarations come from the
 * TypeScript compiler (npm_declarations.ts).
 */
import * as esbuild from "esbuild";
import { emitDeclarations } from "./npm_declarations.ts";

const ROOT = new URL("../../", import.meta.url);

const ENTRIES = {
  index: "src/npm.ts",
  client: "src/client/mod.ts",
  dsl: "src/dsl/mod.ts",
};

/** Packages the bundle imports at run time: they become the package's dependencies. */
const DEPENDENCIES = ["postgres", "@supabase/supabase-js"];

export interface BuildNpmOptions {
  /** Output folder; default dist/npm. */
  outDir?: string;
}

export interface BuildNpmResult {
  outDir: string;
  files: string[];
}

export async function buildNpmPackage(options: BuildNpmOptions = {}): Promise<BuildNpmResult> {
  const outDir = options.outDir ?? new URL("dist/npm", ROOT).pathname;
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  await Deno.remove(outDir, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  try {
    const result = await esbuild.build({
      absWorkingDir: ROOT.pathname,
      entryPoints: ENTRIES,
      outdir: outDir,
      bundle: true,
      splitting: true,
      format: "esm",
      platform: "neutral",
      target: ["node20", "es2022"],
      external: DEPENDENCIES,
      sourcemap: true,
      metafile: true,
      logLevel: "warning",
    });
    const files = Object.keys(result.metafile.outputs);
    files.push(
      ...await emitDeclarations(
        ROOT.pathname,
        outDir,
        Object.entries(ENTRIES).map(([name, source]) => ({ name, source })),
      ),
    );
    await Deno.writeTextFile(
      `${outDir}/package.json`,
      JSON.stringify(packageJson(denoJson), null, 2) + "\n",
    );
    await Deno.copyFile(new URL("README.md", ROOT), `${outDir}/README.md`);
    return { outDir, files: [...files, "package.json", "README.md"] };
  } finally {
    await esbuild.stop();
  }
}

function packageJson(denoJson: { name: string; version: string; imports: Record<string, string> }) {
  const dependencies: Record<string, string> = {};
  for (const name of DEPENDENCIES) {
    const specifier = denoJson.imports[name];
    const version = /^npm:(?:@[^/]+\/)?[^@]+@(.+)$/.exec(specifier ?? "")?.[1];
    if (!version) throw new Error(`deno.json imports has no npm version for ${name}`);
    dependencies[name] = `^${version}`;
  }
  return {
    name: denoJson.name,
    version: denoJson.version,
    description: "Postgres-native DAG workflows (pgflow-compatible): flow DSL, worker, client",
    type: "module",
    exports: {
      ".": { types: "./index.d.ts", default: "./index.js" },
      "./client": { types: "./client.d.ts", default: "./client.js" },
      "./dsl": { types: "./dsl.d.ts", default: "./dsl.js" },
    },
    main: "./index.js",
    types: "./index.d.ts",
    engines: { node: ">=20" },
    sideEffects: false,
    dependencies,
  };
}
