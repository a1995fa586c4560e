/**
 * A run's count updates stay on their page (HOT updates, which write no index entry): no index of
 * `step_states` names a column a step's progress changes, and of a run's updates only its
 * completion changes an indexed column (its status). Each index entry a hot path writes costs
 * every run; this keeps one from coming back unnoticed.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, WORKER_ID } from "./_support/drive.ts";

const DIAMOND_FLOW = `select pgflow.create_flow('dia'); select pgflow.add_step('dia', 'a');
                      select pgflow.add_step('dia', 'b', array['a']);
                      select pgflow.add_step('dia', 'c', array['a']);
                      select pgflow.add_step('dia', 'd', array['b', 'c']);`;

dbTest("a diamond's step-state updates and its run's count-downs are HOT", async ({ sql }) => {
  await define(sql, DIAMOND_FLOW);
  const conn = await sql.reserve();
  try {
    // One transaction: this backend's statistics of it are read before they are flushed.
    await conn`begin`;
    const [run] = await conn<{ run_id: string }[]>`
      select run_id from pgflow.start_flow('dia', '{}'::jsonb)`;
    const claimAndReport = async (steps: string[]) => {
      const claimed = await conn<{ step_slug: string }[]>`
        select step_slug from pgflow.read_and_start_tasks('dia', 30, 10, ${WORKER_ID}::uuid)`;
      assert.deepEqual(claimed.map((t) => t.step_slug).sort(), steps);
      await conn`select count(*) from pgflow.complete_tasks(
        ${steps.map(() => run.run_id)}::uuid[], ${steps}::text[],
        ${steps.map(() => 0)}::int[], ${steps.map(() => "1")}::text[]::jsonb[])`;
    };
    await claimAndReport(["a"]);
    await claimAndReport(["b", "c"]);
    await claimAndReport(["d"]);
    const [status] = await conn<{ status: string }[]>`
      select status from pgflow.runs where run_id = ${run.run_id}::uuid`;
    assert.equal(status.status, "completed");

    const updates = await conn<{ relname: string; updated: number; hot: number }[]>`
      select relname, n_tup_upd::int as updated, n_tup_hot_upd::int as hot
      from pg_stat_xact_user_tables
      where schemaname = 'pgflow' and relname in ('step_states', 'runs')
      order by relname`;
    await conn`commit`;
    const byTable = Object.fromEntries(updates.map((u) => [u.relname, u]));
    // Each step started and completed, d counted down twice.
    assert.equal(byTable.step_states.updated, 10);
    assert.equal(byTable.step_states.hot, byTable.step_states.updated);
    // Counted down after a and after b and c (HOT), completed after d (its status is indexed).
    assert.equal(byTable.runs.updated, 3);
    assert.equal(byTable.runs.hot, 2);
  } finally {
    conn.release();
  }
});
