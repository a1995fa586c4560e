/** Several workers, many tasks: each attempt runs once; maxConcurrent holds; wake-ups are fast. */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import { Flow } from "../src/dsl/mod.ts";
import { compileFlow } from "../src/compile/mod.ts";
import { eventually } from "./_support/eventually.ts";
import { gate, waitForRun, workerTest } from "./_support/worker.ts";

workerTest("two workers on one flow never run the same attempt twice", async (t) => {
  const calls = new Map<string, number>();
  const byWorker = new Map<string, number>();
  let running = 0;
  let peak = 0;
  const flow = new Flow<number[]>({ slug: "shared" })
    .map({ slug: "square" }, async (n, context) => {
      // The attempt number comes from the database: one key per (run, step, task, attempt).
      const [{ attempts_count }] = await context.sql`
        select attempts_count from pgflow.step_tasks
        where run_id = ${context.stepTask.run_id} and step_slug = ${context.stepTask.step_slug}
          and task_index = ${context.stepTask.task_index}`;
      const key =
        `${context.stepTask.run_id}/square/${context.stepTask.task_index}/${attempts_count}`;
      calls.set(key, (calls.get(key) ?? 0) + 1);
      const worker = String(context.workerConfig.workerId);
      byWorker.set(worker, (byWorker.get(worker) ?? 0) + 1);
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
      running--;
      return n * n;
    });
  const options = { maxConcurrent: 4, batchSize: 3, maxPgConnections: 3 };
  const a = await t.run(flow, options);
  const b = await t.run(flow, options);
  const runs = [];
  for (let r = 0; r < 6; r++) {
    runs.push(
      await startFlow(t.sql, {
        flowSlug: "shared",
        input: Array.from({ length: 50 }, (_, i) => i + r),
      }),
    );
  }
  for (const [r, run] of runs.entries()) {
    const done = await waitForRun(t.sql, run.run_id, "completed", 20_000);
    assert.deepEqual(done.output, { square: Array.from({ length: 50 }, (_, i) => (i + r) ** 2) });
  }
  assert.equal(calls.size, 300);
  assert.deepEqual([...new Set(calls.values())], [1]);
  const [{ attempts }] = await t.sql`
    select array_agg(distinct attempts_count) as attempts from pgflow.step_tasks`;
  assert.deepEqual(attempts, [1]);
  assert.ok((byWorker.get(a.worker.workerId) ?? 0) > 0, "worker a ran tasks");
  assert.ok((byWorker.get(b.worker.workerId) ?? 0) > 0, "worker b ran tasks");
  assert.ok(peak <= 8, `at most 2 x maxConcurrent handlers at once, saw ${peak}`);
});

workerTest("one worker never runs more than maxConcurrent handlers at once", async (t) => {
  let running = 0;
  let peak = 0;
  // The first handlers hold their slots until the worker has filled all of them, so reaching
  // the limit does not depend on how fast the database answers.
  let filled = gate();
  const flow = new Flow<number[]>({ slug: "bounded" })
    .map({ slug: "wait" }, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await filled.promise;
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      return n;
    });
  await t.run(flow, { maxConcurrent: 5, batchSize: 4 });
  // Twice: reports hand their slots to the tasks they claim, and a slot lost in that
  // bookkeeping would keep the second round below the limit.
  for (const round of [1, 2]) {
    peak = 0;
    const run = await startFlow(t.sql, {
      flowSlug: "bounded",
      input: Array.from({ length: 60 }, (_, i) => i),
    });
    await eventually(`every slot taken (round ${round})`, () => running >= 5);
    filled.open();
    await waitForRun(t.sql, run.run_id);
    assert.equal(peak, 5);
    filled = gate();
  }
});

workerTest(
  "with LISTEN an idle worker starts a task without waiting for its poll interval",
  async (t) => {
    const flow = new Flow({ slug: "wake" })
      .step({ slug: "a" }, () => 1)
      .step({ slug: "b", dependsOn: ["a"] }, () => 2)
      .step({ slug: "c", dependsOn: ["a"] }, () => 3)
      .step({ slug: "d", dependsOn: ["b", "c"] }, () => 4);
    // Without wake-ups each level would wait a minute (the poll interval and the idle wait);
    // every run completing well within that proves the notifications start each level.
    // (How fast is the benchmark's business: deno task bench measures the latency.)
    const { worker } = await t.run(flow, {
      listen: true,
      maxPollSeconds: 60,
      pollIntervalMs: 60_000,
    });
    for (let i = 0; i < 10; i++) {
      const run = await startFlow(t.sql, { flowSlug: "wake", input: {} });
      await waitForRun(t.sql, run.run_id, "completed", 30_000);
    }
    assert.equal(worker.pollStats.longPolls, 0);
    assert.ok(worker.pollStats.reads <= 40, `reads: ${worker.pollStats.reads}`);
  },
);

workerTest("without LISTEN the long poll finds new tasks within its poll interval", async (t) => {
  const flow = new Flow({ slug: "nolisten" }).step({ slug: "a" }, () => 1);
  const { worker } = await t.run(flow, { listen: false, maxPollSeconds: 2, pollIntervalMs: 50 });
  const run = await startFlow(t.sql, { flowSlug: "nolisten", input: {} });
  await waitForRun(t.sql, run.run_id, "completed", 2_000);
  assert.ok(worker.pollStats.longPolls >= 1);
});

workerTest(
  "without LISTEN each DAG level is claimed after its completion, not at the long poll's next check",
  async (t) => {
    const flow = new Flow<number>({ slug: "levels" })
      .step({ slug: "a" }, ({ run }) => run + 1)
      .step({ slug: "b", dependsOn: ["a"] }, ({ a }) => a + 1)
      .step({ slug: "c", dependsOn: ["b"] }, ({ b }) => b + 1);
    // The run waits in the queue before the worker starts, so the worker's first read finds
    // `a`; a long poll would see `b` and `c` only after a minute.
    await t.sql.unsafe(compileFlow(flow).join(";\n"));
    const run = await startFlow(t.sql, { flowSlug: "levels", input: 1 });
    await t.run(flow, {
      listen: false,
      maxPollSeconds: 120,
      pollIntervalMs: 60_000,
    });
    await waitForRun(t.sql, run.run_id, "completed");
    const [{ output }] = await t.sql`select output from pgflow.runs where run_id = ${run.run_id}`;
    assert.deepEqual(output, { c: 4 });
  },
);
