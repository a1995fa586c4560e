/**
 * The SQL API driven call by call, edgeflow and pgflow side by side on one server: the same
 * call sequence (start_flow per run; then 8 connections each looping pgmq.read of 50,
 * start_tasks, one complete_task per task) against a database with edgeflow's migrations and
 * one with pgflow 0.14.1's (../shared/fixtures, test data only), both on Supabase's stand-ins.
 * Server time per statement comes from pg_stat_statements.
 */
import { medianMs, START_ROUNDS } from "./percentiles.ts";
import { connect, type Sql } from "../src/db/connect.ts";
import { installPgmq } from "../src/dev/pgmq.ts";
import { createTestDb } from "../tests/_support/db.ts";
import { resetStatementStats, type StatementStat, statementStats } from "./statements.ts";

const FIXTURES = new URL("../../shared/fixtures/", import.meta.url);
const WORKER = "33333333-3333-4333-8333-333333333333";
const CONNECTIONS = 8;

export type Core = "edgeflow" | "pgflow";

export interface CoreDatabase {
  core: Core;
  url: string;
  drop(): Promise<void>;
}

/** Why the pgflow side cannot run here (no fixtures or no psql), or undefined. */
export function pgflowMissing(): string | undefined {
  try {
    Deno.statSync(new URL("pgflow-core-0.14.1/", FIXTURES));
    Deno.statSync(new URL("supabase_standins.sql", FIXTURES));
  } catch {
    return `${FIXTURES.pathname} is absent`;
  }
  return undefined;
}

async function psql(url: string, file: URL, oneTransaction: boolean): Promise<void> {
  const args = [url, "-q", "-v", "ON_ERROR_STOP=1", "-f", file.pathname];
  if (oneTransaction) args.push("-1");
  const out = await new Deno.Command("psql", { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`psql ${file.pathname}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A database with the stand-ins and either edgeflow's core (the test template) or pgflow's. */
export async function createCoreDatabase(core: Core): Promise<CoreDatabase> {
  const db = await createTestDb({ template: core === "edgeflow" ? "core" : "empty" });
  await db.sql.end();
  if (core === "pgflow") {
    const sql = connect(db.url, { max: 1 });
    await installPgmq(sql).finally(() => sql.end());
    await psql(db.url, new URL("supabase_standins.sql", FIXTURES), false);
    const dir = new URL("pgflow-core-0.14.1/", FIXTURES);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".sql"))
      .sort();
    for (const file of files) await psql(db.url, new URL(file, dir), true);
  } else {
    await psql(db.url, new URL("supabase_standins.sql", FIXTURES), false);
  }
  return { core, url: db.url, drop: db.drop };
}

async function defineFlows(sql: Sql, core: Core) {
  await sql.unsafe(`
    select pgflow.create_flow('one');
    select pgflow.add_step('one', 's');
    select pgflow.create_flow('wide');
    select pgflow.add_step('wide', 'each', step_type => 'map');`);
  if (core === "pgflow") {
    // pgflow's start_tasks records the worker, which must exist.
    await sql`insert into pgflow.workers (worker_id, queue_name, function_name)
              values (${WORKER}::uuid, 'one', 'bench'), (gen_random_uuid(), 'wide', 'bench')`;
  }
}

/** One connection's loop: read 50, start them, complete each; until `done()` says stop. */
async function drain(sql: Sql, queue: string, done: () => Promise<boolean>): Promise<number> {
  let tasks = 0;
  while (true) {
    const ids = (await sql<{ msg_id: string }[]>`
      select msg_id from pgmq.read(${queue}, 30, 50)`).map((r) => r.msg_id);
    if (ids.length === 0) {
      if (await done()) return tasks;
      await new Promise((resolve) => setTimeout(resolve, 5));
      continue;
    }
    const started = await sql<{ run_id: string; step_slug: string; task_index: number }[]>`
      select run_id, step_slug, task_index
      from pgflow.start_tasks(${queue}, ${ids}::bigint[], ${WORKER}::uuid)`;
    for (const task of started) {
      await sql`select 1 from pgflow.complete_task(${task.run_id}::uuid, ${task.step_slug},
                                                  ${task.task_index}::int, '{"ok":true}'::jsonb)`;
      tasks++;
    }
  }
}

async function runsLeft(sql: Sql, flow: string): Promise<boolean> {
  const [row] = await sql`
    select count(*)::int as n from pgflow.runs where flow_slug = ${flow} and status = 'started'`;
  return row.n === 0;
}

export interface SqlApiResult {
  core: Core;
  /** 2,000 one-step runs started by one statement, ms (the median of START_ROUNDS, percentiles.ts). */
  startFlow2000Ms: number;
  /** The same with edgeflow's `start_flows` (one call for all inputs), ms (likewise). */
  startFlows2000Ms?: number;
  /** Tasks per second, 8 connections driving 2,000 one-step runs call by call. */
  tasksPerSecond: number;
  /** Mean server time of a top-level complete_task call, ms. */
  completeTaskMs: number;
  startTasksMs: number;
  /** One root map over 1,000 elements, start_flow to completed, ms. */
  map1000Ms: number;
  /** The statements that took the most server time while draining (nested ones included). */
  topStatements: StatementStat[];
}

export async function runSqlApiBench(db: CoreDatabase, runs = 2_000): Promise<SqlApiResult> {
  const pools = Array.from({ length: CONNECTIONS }, () => connect(db.url, { max: 1 }));
  const sql = pools[0];
  try {
    await defineFlows(sql, db.core);
    /** Every connection reports the one-step runs' tasks until none is left; counts per pool. */
    const drainAll = () =>
      Promise.all(pools.map((pool) => drain(pool, "one", () => runsLeft(pool, "one"))));
    // Warm-up: plans cached, tables touched.
    await sql`select pgflow.start_flow('one', to_jsonb(i)) from generate_series(1, 100) i`;
    await drainAll();

    // Each start into the same tables; all but the last drained before the next, untimed.
    const startFlowMs = await medianMs(
      START_ROUNDS,
      () =>
        sql`select pgflow.start_flow('one', to_jsonb(i)) from generate_series(1, ${runs}::int) i`,
      drainAll,
    );
    const startFlow2000Ms = startFlowMs * 2_000 / runs;

    await resetStatementStats(sql);
    let began = performance.now();
    const counts = await drainAll();
    const seconds = (performance.now() - began) / 1000;
    const stats = await statementStats(sql);
    const mean = (pattern: RegExp) => {
      const hit = stats.find((s) => s.toplevel && pattern.test(s.query));
      return hit ? hit.meanMs : NaN;
    };

    const input = JSON.stringify(Array.from({ length: 1_000 }, (_, i) => i));
    began = performance.now();
    await sql`select pgflow.start_flow('wide', (${input}::text)::jsonb)`;
    await Promise.all(pools.map((pool) => drain(pool, "wide", () => runsLeft(pool, "wide"))));
    const map1000Ms = performance.now() - began;

    // edgeflow's bulk start (pgflow has none): the same 2,000 runs in one call.
    let startFlows2000Ms: number | undefined;
    const [{ bulk }] = await sql`select to_regproc('pgflow.start_flows') is not null as bulk`;
    if (db.core === "edgeflow" && bulk) {
      const ms = await medianMs(
        START_ROUNDS,
        () =>
          sql`select count(*) from pgflow.start_flows('one',
              array(select to_jsonb(i) from generate_series(1, ${runs}::int) i))`,
      );
      startFlows2000Ms = ms * 2_000 / runs;
    }

    return {
      core: db.core,
      startFlow2000Ms,
      startFlows2000Ms,
      tasksPerSecond: counts.reduce((a, b) => a + b, 0) / seconds,
      completeTaskMs: mean(/pgflow\.complete_task\(/),
      startTasksMs: mean(/pgflow\.start_tasks\(/),
      map1000Ms,
      topStatements: stats.slice(0, 12),
    };
  } finally {
    await Promise.all(pools.map((pool) => pool.end()));
  }
}
