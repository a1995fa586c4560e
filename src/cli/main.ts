/**
 * The edgeflow command line: `deno task edgeflow <command>`, or
 * `deno run -A <url or path>/src/cli/main.ts <command>` from another project.
 */
import { parseArgs } from "node:util";
import { connect, type Sql } from "../db/connect.ts";
import { applyMigrations, readMigrations } from "../db/migrate.ts";
import { startFlow } from "../db/runs.ts";
import { cancelRun, restartRun, resumeRun } from "../db/run_operations.ts";
import { main as compileMain } from "../compile/main.ts";
import { DEV_URL } from "../dev/dev_url.ts";
import { install } from "./install.ts";
import { followRun } from "./progress.ts";

const USAGE = `usage: edgeflow <command> [options]

commands:
  install [--supabase-path supabase]     add the SQL core's migrations to a Supabase project
                                         and scaffold an example flow and worker
  compile <flow module> [--supabase-path supabase] [--export name] [--force]
                                         write a flow's migration
  migrate [--db-url url]                 apply the core migrations to a database
                                         (DATABASE_URL, else the embedded dev database)
  start <flow> <json input> [--no-wait]  start a run and follow it until it ends
  status <run id>                        show a run; follow it while it is in progress
  runs [--flow slug] [--limit 20]        list recent runs
  cancel <run id> [--reason text]        cancel a running run (its handlers are aborted)
  resume <run id>                        continue a failed or cancelled run where it stopped
  restart <run id>                       start a finished run's flow again with its input
  inspect [--host 127.0.0.1] [--port 54330] [--token t]
                                         serve the inspector web page (a token is
                                         required when the host is not loopback)

options: --db-url (default: DATABASE_URL, else the dev database of \`deno task db\`)`;

/** Runs a command; returns the exit code (0 ok, 1 failed, 2 bad usage). */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "install":
        return await installCommand(rest);
      case "compile":
        return await compileMain(rest);
      case "migrate":
        return await migrateCommand(rest);
      case "start":
        return await startCommand(rest);
      case "status":
        return await statusCommand(rest);
      case "runs":
        return await runsCommand(rest);
      case "cancel":
      case "resume":
      case "restart":
        return await runOperationCommand(command, rest);
      case "inspect": {
        // Loaded only here: the web server and its layout library are not part of the CLI's core.
        const { inspectMain } = await import("../inspector/main.ts");
        return await inspectMain(rest);
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        console.error(`unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

class UsageError extends Error {}

function parse(args: string[], options: Record<string, { type: "string" | "boolean" }>) {
  try {
    return parseArgs({ args, allowPositionals: true, options });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function installCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { "supabase-path": { type: "string" } });
  const result = await install({ supabasePath: values["supabase-path"] as string | undefined });
  for (const file of result.added) console.log(`added migration ${file}`);
  if (result.present.length) {
    console.log(`already present: ${result.present.length} core migration(s)`);
  }
  for (const file of result.scaffolded) console.log(`created ${file}`);
  if (!result.added.length && !result.scaffolded.length) {
    console.log("edgeflow is already installed");
  }
  return 0;
}

async function migrateCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { "db-url": { type: "string" } });
  const url = (values["db-url"] as string | undefined) ?? Deno.env.get("DATABASE_URL");
  if (!url) {
    // The embedded dev database gets edgeflow's pgmq-compatible SQL; a real one must have pgmq.
    // Loaded only here: the embedded server is development tooling, not part of the CLI's core.
    const { openDevDatabase } = await import("../dev/dev_database.ts");
    const { exitOnSetupError } = await import("../dev/postgres_setup_error.ts");
    const db = await exitOnSetupError(openDevDatabase);
    console.log(`dev database ${db.url}: applied ${db.applied.length} migration(s)`);
    await db.stop();
    return 0;
  }
  const sql = connect(url, { max: 1 });
  try {
    const applied = await applyMigrations(sql, await readMigrations());
    console.log(applied.length ? `applied ${applied.join(", ")}` : "up to date");
    return 0;
  } finally {
    await sql.end();
  }
}

/** DATABASE_URL / --db-url, else the dev database (which must be running: `deno task db`). */
async function withDatabase<T>(
  url: string | undefined,
  fn: (sql: Sql, listener: Sql) => Promise<T>,
) {
  const target = url ?? Deno.env.get("DATABASE_URL") ?? DEV_URL;
  const sql = connect(target, { max: 2, applicationName: "edgeflow-cli" });
  const listener = connect(target, { max: 1, applicationName: "edgeflow-cli" });
  try {
    return await fn(sql, listener);
  } finally {
    await Promise.all([sql.end({ timeout: 1 }), listener.end({ timeout: 1 })]);
  }
}

async function startCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    "db-url": { type: "string" },
    "no-wait": { type: "boolean" },
  });
  if (positionals.length !== 2) throw new UsageError("start needs <flow> and <json input>");
  const [flowSlug, text] = positionals;
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`input is not JSON: ${(error as Error).message}`);
  }
  return await withDatabase(values["db-url"] as string | undefined, async (sql, listener) => {
    const run = await startFlow(sql, { flowSlug, input });
    console.log(`started run ${run.run_id} of flow ${flowSlug}`);
    if (values["no-wait"]) return 0;
    const final = await followRun(sql, listener, run.run_id, (line) => console.log(line));
    console.log(JSON.stringify(final.run.output ?? null));
    return final.run.status === "completed" ? 0 : 1;
  });
}

async function statusCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { "db-url": { type: "string" } });
  if (positionals.length !== 1) throw new UsageError("status needs <run id>");
  return await withDatabase(values["db-url"] as string | undefined, async (sql, listener) => {
    const final = await followRun(sql, listener, positionals[0], (line) => console.log(line));
    for (const step of final.steps) {
      if (step.error_message) console.log(`  ${step.step_slug}: ${step.error_message}`);
    }
    if (final.run.output !== null) console.log(JSON.stringify(final.run.output));
    return final.run.status === "completed" ? 0 : 1;
  });
}

async function runsCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {
    "db-url": { type: "string" },
    flow: { type: "string" },
    limit: { type: "string" },
  });
  const limit = Number(values.limit ?? 20);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new UsageError("--limit must be a positive integer");
  }
  const flow = (values.flow as string | undefined) ?? null;
  return await withDatabase(values["db-url"] as string | undefined, async (sql) => {
    const rows = await sql<
      {
        run_id: string;
        flow_slug: string;
        status: string;
        remaining_steps: number;
        started_at: Date;
      }[]
    >`
      select run_id, flow_slug, status, remaining_steps, started_at from pgflow.runs
      where ${flow}::text is null or flow_slug = ${flow}
      order by started_at desc limit ${limit}`;
    if (rows.length === 0) console.log("no runs");
    for (const row of rows) {
      console.log(
        `${row.started_at.toISOString()}  ${row.run_id}  ${row.flow_slug.padEnd(20)}  ${
          row.status.padEnd(9)
        }  ` +
          `${row.remaining_steps} step(s) left`,
      );
    }
    return 0;
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function runOperationCommand(
  command: "cancel" | "resume" | "restart",
  args: string[],
): Promise<number> {
  const { values, positionals } = parse(args, {
    "db-url": { type: "string" },
    ...(command === "cancel" ? { reason: { type: "string" } } : {}),
  });
  if (positionals.length !== 1) throw new UsageError(`${command} needs exactly one <run id>`);
  const [runId] = positionals;
  if (!UUID.test(runId)) throw new UsageError(`<run id> must be a UUID, got "${runId}"`);
  const reason = values.reason as string | undefined;
  return await withDatabase(values["db-url"] as string | undefined, async (sql) => {
    switch (command) {
      case "cancel": {
        const run = await cancelRun(sql, { runId, reason });
        console.log(
          `run ${run.run_id} of flow ${run.flow_slug} is cancelled (at ${run.cancelled_at?.toISOString()})`,
        );
        break;
      }
      case "resume": {
        const run = await resumeRun(sql, runId);
        console.log(
          `resumed run ${run.run_id} of flow ${run.flow_slug}: ${run.remaining_steps} step(s) left`,
        );
        break;
      }
      case "restart": {
        const run = await restartRun(sql, runId);
        console.log(`restarted run ${runId} as run ${run.run_id} of flow ${run.flow_slug}`);
        break;
      }
    }
    return 0;
  });
}

// Last, so that every declaration above is initialised when a command runs.
if (import.meta.main) Deno.exit(await main(Deno.args));
