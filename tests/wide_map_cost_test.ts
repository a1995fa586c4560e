/**
 * A batch of a wide map costs the same whatever the map's width. A worker's connection keeps
 * the plans of the engine's statements from its first calls, often made while the tables were
 * small; such a plan once read every started task of the map on each claim and each batch of
 * reports (a map's cost grew with the square of its width). Here every plan is generic and
 * made on near-empty tables, then the rows of step_tasks one batch reads are counted.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, WORKER_ID } from "./_support/drive.ts";
import type { Sql } from "../src/db/connect.ts";

const BATCH = 10;
const WARM_UP = 1_000;
const WIDTH = 3_000;

type Reserved = Awaited<ReturnType<Sql["reserve"]>>;

async function claim(conn: Reserved) {
  return await conn<{ run_id: string; step_slug: string; task_index: number }[]>`
    select run_id, step_slug, task_index
    from pgflow.read_and_start_tasks('wide', 30, ${BATCH}::int, ${WORKER_ID}::uuid)`;
}

async function report(conn: Reserved, tasks: { run_id: string; task_index: number }[]) {
  await conn`
    select count(*) from pgflow.complete_tasks(
      ${tasks.map((t) => t.run_id)}::uuid[],
      ${tasks.map(() => "each")}::text[],
      ${tasks.map((t) => t.task_index)}::int[],
      ${tasks.map((t) => JSON.stringify(t.task_index))}::text[]::jsonb[])`;
}

/** Rows of step_tasks this backend has read and not yet reported to the statistics. */
async function taskRowsRead(conn: Reserved): Promise<number> {
  const [row] = await conn<{ n: number }[]>`
    select (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::int as n
    from pg_stat_xact_user_tables where relid = 'pgflow.step_tasks'::regclass`;
  return row.n;
}

dbTest(
  "a claim and a batch of reports of a wide map read only their own tasks",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('wide');
     select pgflow.add_step('wide', 'each', step_type => 'map');`,
    );
    const conn = await sql.reserve();
    try {
      await conn`set plan_cache_mode = force_generic_plan`;
      // Plans made now (generic ones, as after five calls), while the tables are small.
      await conn`select pgflow.start_flow('wide', (select jsonb_agg(i) from generate_series(1, ${WARM_UP}::int) i))`;
      for (let tasks = await claim(conn); tasks.length > 0; tasks = await claim(conn)) {
        await report(conn, tasks);
      }

      await conn`select pgflow.start_flow('wide', (select jsonb_agg(i) from generate_series(1, ${WIDTH}::int) i))`;
      // Run a few batches so the wide map's finished tasks are behind the next ones.
      for (let i = 0; i < 5; i++) await report(conn, await claim(conn));

      // Inside one transaction: the counters then hold this backend's unflushed counts of
      // earlier transactions too, but nothing is flushed until it ends.
      await conn`begin`;
      const before = await taskRowsRead(conn);
      const tasks = await claim(conn);
      assert.equal(tasks.length, BATCH);
      const claimed = await taskRowsRead(conn);
      await report(conn, tasks);
      const claimRead = claimed - before;
      const reportRead = (await taskRowsRead(conn)) - claimed;
      await conn`commit`;

      // A handful of lookups per task; a plan that scans the map reads thousands.
      assert.ok(claimRead <= 5 * BATCH, `the claim read ${claimRead} task rows for ${BATCH} tasks`);
      assert.ok(
        reportRead <= 5 * BATCH,
        `the reports read ${reportRead} task rows for ${BATCH} tasks`,
      );
    } finally {
      conn.release();
    }
  },
);
