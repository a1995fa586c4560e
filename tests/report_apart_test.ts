/**
 * Reports apart from claims: a report whose claimer says `claimsApart` gives its task's slot back
 * as it queues (up to a batch of them) or as it is sent, so the worker claims its next tasks
 * while the report waits and commits. Seen here with the report held up by a lock on its run.
 */
import assert from "node:assert/strict";
import { connect } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import type { TaskCompletion } from "../src/db/tasks.ts";
import { type Claimer, CompletionBatcher } from "../src/worker/completion_batcher.ts";
import { Executor } from "../src/worker/executor.ts";
import { dbTest } from "./_support/db.ts";
import { define, takeTasks, WORKER_ID } from "./_support/drive.ts";

/** A claimer that always reports apart and counts the claims it was asked for. */
function apartClaimer(flowSlug: string) {
  const seen = { apartClaims: 0, combinedClaims: 0 };
  const claimer: Claimer = {
    flowSlug,
    workerId: WORKER_ID,
    vt: 30,
    take: () => {
      seen.combinedClaims++;
      return null;
    },
    run: () => {},
    release: () => {},
    claimsApart: (completions: readonly TaskCompletion[]) => completions.length > 0,
    claimApart: () => seen.apartClaims++,
  };
  return { claimer, seen };
}

dbTest(
  "reports apart free their slots while the report waits, a batch ahead at most",
  async ({ sql, url }) => {
    await define(
      sql,
      `select pgflow.create_flow('apart');
       select pgflow.add_step('apart', 'each', step_type => 'map');`,
    );
    const { run_id: runId } = await startFlow(sql, { flowSlug: "apart", input: [1, 2, 3] });
    const tasks = await takeTasks(sql, "apart");
    assert.equal(tasks.length, 3);

    // Another session holds the run: complete_tasks waits for its lock.
    const holder = connect(url, { max: 1 });
    let releaseRun!: () => void;
    const held = new Promise<void>((resolve) => releaseRun = resolve);
    let runLocked!: () => void;
    const locked = new Promise<void>((resolve) => runLocked = resolve);
    const holding = holder.begin(async (tx) => {
      await tx`select 1 from pgflow.runs where run_id = ${runId}::uuid for update`;
      runLocked();
      await held;
    });
    try {
      await locked;
      const { claimer, seen } = apartClaimer("apart");
      const batcher = new CompletionBatcher(sql, { maxInFlight: 2, maxBatch: 2, claimer });
      const freed: number[] = [];
      const reports = tasks.map((task) =>
        batcher.complete(
          {
            runId: task.run_id,
            stepSlug: task.step_slug,
            taskIndex: task.task_index,
            output: task.task_index,
          },
          () => freed.push(task.task_index),
        )
      );
      // Two reports (a batch) freed their slots as they queued; the third waits for the
      // first statement on the run, which waits for the lock.
      assert.deepEqual(freed.sort(), [0, 1]);
      assert.equal(seen.apartClaims, 2);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const [{ completed }] = await sql<{ completed: number }[]>`
        select count(*) filter (where status = 'completed')::int as completed
        from pgflow.step_tasks where run_id = ${runId}::uuid`;
      assert.equal(completed, 0, "nothing committed while the run is held");
      assert.deepEqual(freed.sort(), [0, 1]);

      releaseRun();
      await holding;
      const results = await Promise.all(reports);
      assert.ok(results.every((r) => r.result.status === "completed" && !r.slotHandedOver));
      assert.deepEqual(freed.sort(), [0, 1, 2], "each slot freed once");
      assert.equal(seen.combinedClaims, 0, "no report claimed with it");
      const [run] = await sql`select status from pgflow.runs where run_id = ${runId}::uuid`;
      assert.equal(run.status, "completed");
    } finally {
      releaseRun();
      await holding.catch(() => {});
      await holder.end();
    }
  },
);

Deno.test("a report that frees its slot early gives it back once, before it settles", async () => {
  const frees: number[] = [];
  const executor = new Executor(2, { onFree: () => frees.push(executor.free) });
  executor.reserve(1);
  let settle!: () => void;
  const reportSettles = new Promise<void>((resolve) => settle = resolve);
  let freedEarly!: () => void;
  const slotBack = new Promise<void>((resolve) => freedEarly = resolve);
  executor.execute({
    what: 'step "each"',
    timeoutMs: 1_000,
    run: () => "done",
    async report(_outcome, freeSlot) {
      freeSlot();
      freeSlot(); // a second call changes nothing
      freedEarly();
      await reportSettles;
    },
  });
  await slotBack;
  assert.equal(executor.free, 2, "the slot is back while the report is out");
  assert.equal(executor.running, 1, "the job still counts as running until it reported");
  settle();
  await executor.drain(1_000);
  assert.equal(executor.free, 2, "not given back a second time");
  assert.equal(executor.running, 0);
  assert.deepEqual(frees, [2]);
});
