/**
 * The completion batcher's grouping, seen in the database: reports sent in one statement share
 * one transaction, hence one completed_at (pgflow.now() is the transaction's time).
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, takeTasks } from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import { CompletionBatcher } from "../src/worker/completion_batcher.ts";

dbTest(
  "reports of one turn go in few statements, all of a run's in the same one",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('grouped');
       select pgflow.add_step('grouped', 'each', step_type => 'map');`,
    );
    const runs = [];
    for (let i = 0; i < 3; i++) {
      runs.push((await startFlow(sql, { flowSlug: "grouped", input: [1, 2, 3, 4] })).run_id);
    }
    const tasks = await takeTasks(sql, "grouped");
    assert.equal(tasks.length, 12);
    const batcher = new CompletionBatcher(sql, { maxInFlight: 2, maxBatch: 50 });
    // One turn of the event loop, as when the tasks of one claim finish together.
    const reported = await Promise.all(tasks.map((task) =>
      batcher.complete({
        runId: task.run_id,
        stepSlug: task.step_slug,
        taskIndex: task.task_index,
        output: task.task_index,
      })
    ));
    assert.ok(reported.every((r) => r.result.status === "completed" && !r.slotHandedOver));

    const rows = await sql<{ run_id: string; moments: number }[]>`
      select run_id, count(distinct completed_at)::int as moments
      from pgflow.step_tasks where flow_slug = 'grouped' group by run_id`;
    assert.deepEqual(rows.map((r) => r.moments), [1, 1, 1], "each run's reports in one statement");
    const [{ statements }] = await sql<{ statements: number }[]>`
      select count(distinct completed_at)::int as statements
      from pgflow.step_tasks where flow_slug = 'grouped'`;
    assert.equal(statements, 2, "shared between the two statements allowed in flight");
    const finished = await sql`select status from pgflow.runs where run_id = any(${runs}::uuid[])`;
    assert.deepEqual(finished.map((r) => r.status), ["completed", "completed", "completed"]);
  },
);
