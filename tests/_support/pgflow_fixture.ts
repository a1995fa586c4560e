/**
 * A database as pgflow left it: Supabase's stand-ins, then pgflow's released
 * migrations (../shared/fixtures, test data only), each file in one
 * transaction, then runs driven mid-flight with pgflow's own SQL functions.
 */
import type { Sql } from "../../src/db/connect.ts";

/** ../shared/fixtures beside the clone, or EDGEFLOW_FIXTURES_DIR. */
export const FIXTURES_DIR = Deno.env.get("EDGEFLOW_FIXTURES_DIR")
  ? new URL(`file://${Deno.env.get("EDGEFLOW_FIXTURES_DIR")!.replace(/\/?$/, "/")}`)
  : new URL("../../../shared/fixtures/", import.meta.url);
export const PGFLOW_RELEASES = ["0.10.0", "0.14.1"] as const;
export type PgflowRelease = typeof PGFLOW_RELEASES[number];

/** Why fixture tests cannot run here, or undefined when they can. */
export function fixturesMissing(): string | undefined {
  try {
    Deno.statSync(new URL("supabase_standins.sql", FIXTURES_DIR));
    return undefined;
  } catch {
    return `skipped: ${FIXTURES_DIR.pathname} is absent (a clone outside CI)`;
  }
}

export async function psqlFile(url: string, file: URL, oneTransaction = false): Promise<void> {
  const args = [url, "-q", "-v", "ON_ERROR_STOP=1", "-f", file.pathname];
  if (oneTransaction) args.push("-1");
  const result = await new Deno.Command("psql", { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!result.success) {
    throw new Error(`psql ${file.pathname}: ${new TextDecoder().decode(result.stderr)}`);
  }
}

/** pgflow's migration files of a release, in filename order. */
export function pgflowMigrationFiles(release: PgflowRelease): URL[] {
  const dir = new URL(`pgflow-core-${release}/`, FIXTURES_DIR);
  return [...Deno.readDirSync(dir)]
    .filter((entry) => entry.name.endsWith(".sql"))
    .map((entry) => entry.name)
    .sort()
    .map((name) => new URL(name, dir));
}

/** Installs the stand-ins and pgflow `release` on an empty database. */
export async function installPgflow(url: string, release: PgflowRelease): Promise<void> {
  await psqlFile(url, new URL("supabase_standins.sql", FIXTURES_DIR));
  for (const file of pgflowMigrationFiles(release)) await psqlFile(url, file, true);
}

/** What the mid-flight scenario left, for the assertions after the switch. */
export interface MidFlight {
  /** Run 1: fetch, audit, items done; map task 0 done, task 1 retrying, task 2 queued. */
  partial: string;
  /** Run 2: started, nothing read yet. */
  queued: string;
  /** A failed run of flow "fragile" whose other task pgflow left open. */
  failed: string;
}

export const WORKER = "22222222-2222-4222-8222-222222222222";

async function read(sql: Sql, queue: string, vt: number): Promise<number[]> {
  const rows = await sql<{ msg_id: number }[]>`select msg_id from pgmq.read(${queue}, ${vt}, 100)`;
  return rows.map((r) => Number(r.msg_id));
}

async function start(sql: Sql, flow: string, msgIds: number[]) {
  return await sql<{ run_id: string; step_slug: string; task_index: number; msg_id: number }[]>`
    select run_id, step_slug, task_index, msg_id
    from pgflow.start_tasks(${flow}, ${msgIds}::bigint[], ${WORKER}::uuid)`;
}

/**
 * Defines flows "etl" (fetch, audit roots; items <- fetch; map double <- items;
 * sum <- double) and "fragile" (max_attempts 1, two roots) with pgflow's SQL,
 * and drives runs with pgflow's functions as its worker would.
 */
export async function driveMidFlight(sql: Sql): Promise<MidFlight> {
  await sql.unsafe(`
    select pgflow.create_flow('etl', max_attempts => 3, base_delay => 1, timeout => 30);
    select pgflow.add_step(flow_slug => 'etl', step_slug => 'fetch');
    select pgflow.add_step(flow_slug => 'etl', step_slug => 'audit', max_attempts => 2);
    select pgflow.add_step(flow_slug => 'etl', step_slug => 'items', deps_slugs => array['fetch']);
    select pgflow.add_step(flow_slug => 'etl', step_slug => 'double', deps_slugs => array['items'],
                           step_type => 'map');
    select pgflow.add_step(flow_slug => 'etl', step_slug => 'sum', deps_slugs => array['double']);
    select pgflow.create_flow('fragile', max_attempts => 1);
    select pgflow.add_step(flow_slug => 'fragile', step_slug => 'a');
    select pgflow.add_step(flow_slug => 'fragile', step_slug => 'b');`);
  // A worker registers the way pgflow's edge worker does.
  await sql`insert into pgflow.workers (queue_name, worker_id, function_name)
            values ('etl', ${WORKER}::uuid, 'etl-worker')`;
  await sql`select pgflow.track_worker_function('etl-worker')`;

  const [{ run_id: partial }] = await sql`select run_id from pgflow.start_flow('etl', '{"n": 1}')`;
  for (const task of await start(sql, "etl", await read(sql, "etl", 30))) {
    const output = task.step_slug === "fetch" ? { fetched: 10 } : "ok";
    await sql`select pgflow.complete_task(${task.run_id}::uuid, ${task.step_slug}, ${task.task_index}, ${
      sql.json(output)
    }::jsonb)`;
  }
  const [items] = await start(sql, "etl", await read(sql, "etl", 30));
  await sql`select pgflow.complete_task(${items.run_id}::uuid, 'items', 0, '[1, 2, 3]'::jsonb)`;
  // Read the three map tasks with vt 0 (visible again at once); start only tasks 0 and 1.
  const mapMessages = await read(sql, "etl", 0);
  const started = await start(sql, "etl", mapMessages.slice(0, 2));
  for (const task of started) {
    if (task.task_index === 0) {
      await sql`select pgflow.complete_task(${task.run_id}::uuid, 'double', 0, '2'::jsonb)`;
    } else {
      await sql`select pgflow.fail_task(${task.run_id}::uuid, 'double', ${task.task_index}, 'flaky once')`;
    }
  }

  const [{ run_id: queued }] = await sql`select run_id from pgflow.start_flow('etl', '{"n": 2}')`;

  const [{ run_id: failed }] = await sql`select run_id from pgflow.start_flow('fragile', '{}')`;
  const fragile = await start(sql, "fragile", await read(sql, "fragile", 30));
  const a = fragile.find((t) => t.step_slug === "a")!;
  await sql`select pgflow.fail_task(${a.run_id}::uuid, 'a', 0, 'a broke')`;
  return { partial, queued, failed };
}
