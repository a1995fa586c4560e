/**
 * `deno run -A src/compile/main.ts <flow module> [--supabase-path p] [--export name] [--force]`
 * writes the flow's migration into `<p>/migrations/` (see `writeFlowMigration`).
 */
import { parseArgs } from "node:util";
import { writeFlowMigration } from "./write_migration.ts";

const USAGE =
  "usage: deno run -A src/compile/main.ts <flow module> [--supabase-path supabase] [--export name] [--force]";

if (import.meta.main) Deno.exit(await main(Deno.args));

/** Returns the exit code: 0 done, 1 failed, 2 bad usage. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        "supabase-path": { type: "string" },
        export: { type: "string" },
        force: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  try {
    const result = await writeFlowMigration(parsed.positionals[0], {
      supabasePath: parsed.values["supabase-path"],
      exportName: parsed.values.export,
      force: parsed.values.force,
    });
    console.log(
      result.created
        ? `created ${result.path}`
        : `unchanged: ${result.path} already creates flow "${result.flowSlug}"`,
    );
    return 0;
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}
