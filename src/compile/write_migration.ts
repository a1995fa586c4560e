/** Writes a flow's compiled definition as a Supabase migration. */
import { join, relative, resolve } from "node:path";
import type { AnyFlow } from "../dsl/flow.ts";
import { listSqlFiles } from "../db/migrate.ts";
import { compileFlow } from "./compile_flow.ts";
import { loadFlow } from "./load_flow.ts";
import { formatMigrationTimestamp, parseMigrationTimestamp } from "./migration_timestamp.ts";

export interface WriteFlowMigrationOptions {
  /** The Supabase project folder; the file goes to `<supabasePath>/migrations/`. Default `supabase`. */
  supabasePath?: string;
  /** Which export holds the flow (default: the default export, else the only exported Flow). */
  exportName?: string;
  /** The migration's timestamp (default: the current time). */
  now?: Date;
  /** Write a new migration even when one for this flow exists with a different definition. */
  force?: boolean;
  /** The source named in the file's header (default: `flowModulePath`). */
  sourceLabel?: string;
}

export interface FlowMigrationResult {
  flowSlug: string;
  /** The migration holding the flow's definition (new or already there). */
  path: string;
  /** `false` when an identical migration already existed and nothing was written. */
  created: boolean;
}

/**
 * Compiles the flow exported by `flowModulePath` into
 * `<supabasePath>/migrations/<timestamp>_create_<slug>_flow.sql`.
 *
 * - An existing `*_create_<slug>_flow.sql` with the same statements: nothing is written and
 *   its path is returned (`created: false`), so running the compiler again is harmless.
 * - One with different statements: an error, unless `force`. A flow's definition is fixed
 *   once created in a database, so a second migration would not change it there; the fix
 *   is a new slug (e.g. `<slug>_v2`), or deleting the old migration if it was never applied.
 * - The timestamp is `now`, moved past the newest migration in the folder if needed, so the
 *   flow is always created after the SQL core it calls.
 */
export async function writeFlowMigration(
  flowModulePath: string,
  options: WriteFlowMigrationOptions = {},
): Promise<FlowMigrationResult> {
  const flow = await loadFlow(flowModulePath, options.exportName);
  const dir = join(options.supabasePath ?? "supabase", "migrations");
  const body = compileFlow(flow).join("\n") + "\n";
  const existing = await listSqlFiles(dir);

  const namePattern = new RegExp(`^\\d{14}_create_${flow.slug}_flow\\.sql$`);
  const previous = existing.filter((name) => namePattern.test(name));
  for (const name of previous) {
    const path = join(dir, name);
    if (statementsOf(await Deno.readTextFile(path)) === body) {
      return { flowSlug: flow.slug, path, created: false };
    }
  }
  if (previous.length && !options.force) {
    throw new Error(
      `Flow "${flow.slug}": ${join(dir, previous[previous.length - 1])} already defines this ` +
        "flow differently. A flow's definition cannot change once it is created in a " +
        `database, so give the changed flow a new slug (e.g. "${flow.slug}_v2"), or delete ` +
        "the old migration if it was never applied anywhere (or pass force to write anyway).",
    );
  }

  const timestamp = formatMigrationTimestamp(nextTimestamp(options.now ?? new Date(), existing));
  const path = join(dir, `${timestamp}_create_${flow.slug}_flow.sql`);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, header(flow, options.sourceLabel ?? flowModulePath) + body, {
    createNew: true,
  });
  return { flowSlug: flow.slug, path, created: true };
}

function header(flow: AnyFlow, modulePath: string): string {
  const source = /^[a-z][a-z0-9+.-]*:/i.test(modulePath)
    ? modulePath
    : relative(Deno.cwd(), resolve(modulePath)).replaceAll("\\", "/");
  return [
    `-- edgeflow: creates flow "${flow.slug}" (compiled from ${source}).`,
    "-- Generated; do not edit. A flow's definition cannot change once created:",
    "-- to change it, give the flow a new slug and compile again.",
    "",
  ].join("\n");
}

/** The SQL of a migration without comments and blank lines, as `compileFlow` output is joined. */
function statementsOf(text: string): string {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  return lines.filter((line) => line && !line.startsWith("--")).join("\n") + "\n";
}

/** `now` (whole seconds), or one second after the newest existing migration if that is later. */
function nextTimestamp(now: Date, existing: readonly string[]): Date {
  let next = Math.floor(now.getTime() / 1000) * 1000;
  for (const name of existing) {
    const time = parseMigrationTimestamp(name)?.getTime();
    if (time !== undefined && time >= next) next = time + 1000;
  }
  return new Date(next);
}
