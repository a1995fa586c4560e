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
import { eventually } from "./_support/eventually.ts";
import type { StepTaskRecord } from "../src/db/types.ts";

/**
 * A claimer that always reports apart, counts the claims it was asked for, and holds the slots
 * asked back (as if all were free).
 */
function apartClaimer(flowSlug: string) {
  const seen = {
    apartClaims: 0,
    combinedClaims: 0,
    held: [] as number[],
    released: [] as number[],
  };
  const claimer: Claimer = {
    flowSlug,
    workerId: WORKER_ID,
    vt: 30,
    take: () => {
      seen.combinedClaims++;
      return null;
    },
    run: () => {},
    release: (slots) => seen.released.push(slots),
    claimsApart: (completions: readonly TaskCompletion[]) => completions.length > 0,
    claimApart: () => seen.apartClaims++,
    holdSlots: (slots) => {
      seen.held.push(slots);
      return slots;
    },
  };
  return { claimer, seen };
}

/** Holds run `runId` locked from another session until `release()`. */
function holdRun(url: string, runId: string) {
  const holder = connect(url, { max: 1 });
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => locked = resolve);
  const done = holder.begin(async (tx) => {
    await tx`select 1 from pgflow.runs where run_id = ${runId}::uuid for update`;
    locked();
    await held;
  });
  let ended: Promise<void> | undefined;
  return {
    locked: isLocked,
    release() {
      release();
      ended ??= done.catch(() => {}).then(() => holder.end());
      return ended;
    },
  };
}

function reportAll(batcher: CompletionBatcher, tasks: StepTaskRecord[], freed: number[]) {
  return tasks.map((task) =>
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
    const run = holdRun(url, runId);
    try {
      await run.locked;
      const { claimer, seen } = apartClaimer("apart");
      const batcher = new CompletionBatcher(sql, { maxInFlight: 2, maxBatch: 2, claimer });
      const freed: number[] = [];
      const reports = reportAll(batcher, tasks, freed);
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

      await run.release();
      const results = await Promise.all(reports);
      assert.ok(results.every((r) => r.result.status === "completed" && !r.slotHandedOver));
      assert.deepEqual(freed.sort(), [0, 1, 2], "each slot freed once");
      assert.equal(seen.combinedClaims, 0, "no report claimed with it");
      assert.deepEqual(seen.held, [], "no report had to wait for the database");
      const [done] = await sql`select status from pgflow.runs where run_id = ${runId}::uuid`;
      assert.equal(done.status, "completed");
    } finally {
      await run.release();
    }
  },
);

dbTest(
  "a report apart that cannot get through takes its slots back until it does",
  async ({ sql, url }) => {
    await define(
      sql,
      `select pgflow.create_flow('lost');
       select pgflow.add_step('lost', 'each', step_type => 'map');`,
    );
    const { run_id: runId } = await startFlow(sql, { flowSlug: "lost", input: [1, 2] });
    const tasks = await takeTasks(sql, "lost");
    const run = holdRun(url, runId);
    const reporterPool = connect(url, { max: 1 });
    try {
      await run.locked;
      const { claimer, seen } = apartClaimer("lost");
      const batcher = new CompletionBatcher(reporterPool, { maxInFlight: 1, maxBatch: 2, claimer });
      const freed: number[] = [];
      const reports = reportAll(batcher, tasks, freed);
      assert.deepEqual(freed.sort(), [0, 1], "freed as they queued");

      // The report waits for the run's lock; its connection is cut, as in an outage.
      await eventually("the report waits for the run", async () => {
        const waiting = await sql`
          select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'
            and query like '%complete_tasks%'`;
        return waiting.length === 1;
      });
      await eventually(
        "the report took its slots back",
        () => Promise.resolve(seen.held.length > 0),
      );
      assert.deepEqual(seen.held, [2]);
      assert.deepEqual(seen.released, [], "held while the report retries");

      await run.release();
      const results = await Promise.all(reports);
      assert.ok(results.every((r) => r.result.status === "completed"));
      assert.deepEqual(seen.released, [2], "given back once it went through");
    } finally {
      await run.release();
      await reporterPool.end();
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
