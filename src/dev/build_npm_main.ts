/** `deno task build:npm [--out <dir>]`: the npm package into dist/npm (see build_npm.ts). */
import { parseArgs } from "node:util";
import { buildNpmPackage } from "./build_npm.ts";

const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });
const { outDir, files } = await buildNpmPackage({ outDir: values.out });
console.log(`npm package in ${outDir}: ${files.length} files`);
