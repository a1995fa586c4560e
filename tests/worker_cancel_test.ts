/**
 * A worker whose run is cancelled aborts the handlers' signals: at once on the notification
 * (LISTEN), else within a heartbeat interval; a handler that ignores its signal changes nothing
 * when it finishes; a forged notification aborts nothing; a resumed run finishes on the worker.
 */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import { cancelRun, resumeRun } from "../src/db/run_operations.ts";
import { Flow } from "../src/dsl/mod.ts";
import type { Sql } from "../src/db/connect.ts";
import { eventually } from "./_support/eventually.ts";
import { gate, waitForRun, workerTest } from "./_support/worker.ts";

/** A one-step flow whose handler waits for `release` and reports how its signal ended. */
function waitingFlow(slug: string, options: { honourSignal: boolean }) {
  const aborted: unknown[] = [];
  const started = gate();
  const release = gate<string>();
  const flow = new Flow<{ n: number }>({ slug }).step({ slug: "wait" }, (_input, context) => {
    started.open();
    context.signal.addEventListener("abort", () => aborted.push(context.signal.reason));
    if (!options.honourSignal) return release.promise;
    return new Promise<string>((resolve, reject) => {
      context.signal.addEventListener("abort", () => reject(context.signal.reason));
      release.promise.then(resolve);
    });
  });
  return { flow, aborted, started, release };
}

async function task(sql: Sql, runId: string) {
  const [row] = await sql`
    select status, attempts_count, output, error_message from pgflow.step_tasks where run_id = ${runId}`;
  return { ...row };
}

workerTest(
  "on LISTEN, a cancelled run's handler is aborted at once, not at a heartbeat",
  async (t) => {
    const { flow, aborted, started } = waitingFlow("cancel_listen", { honourSignal: true });
    // No heartbeat during the test: only the notification can abort the handler.
    const { worker, logs, status } = await t.run(flow, {
      listen: true,
      heartbeatIntervalMs: 600_000,
    });
    const run = await startFlow(t.sql, { flowSlug: "cancel_listen", input: { n: 1 } });
    await started.promise;

    await cancelRun(t.sql, { runId: run.run_id, reason: "stop it" });
    await eventually("the handler's signal aborted", () => aborted.length === 1);
    assert.match(String(aborted[0]), /RunCancelledError: cancelled: run .* was cancelled/);
    await eventually("the slot freed", async () => (await status()).inFlight === 0);
    assert.ok(logs.some((l) => l.msg === "task aborted: its run was cancelled; nothing to report"));
    assert.deepEqual(await task(t.sql, run.run_id), {
      status: "cancelled",
      attempts_count: 1,
      output: null,
      error_message: "cancelled: stop it",
    });
    assert.equal((await status()).tasksFailed, 0, "a cancelled task is not a failure");
    assert.equal(worker.state, "running");
  },
);

workerTest(
  "without LISTEN, the heartbeat-interval check aborts a cancelled run's handler",
  async (t) => {
    const { flow, aborted, started } = waitingFlow("cancel_poll", { honourSignal: true });
    const { status } = await t.run(flow, { listen: false, heartbeatIntervalMs: 100 });
    const run = await startFlow(t.sql, { flowSlug: "cancel_poll", input: { n: 1 } });
    await started.promise;
    await cancelRun(t.sql, { runId: run.run_id });
    await eventually("the handler's signal aborted", () => aborted.length === 1);
    await eventually("the slot freed", async () => (await status()).inFlight === 0);
    assert.equal((await task(t.sql, run.run_id)).status, "cancelled");
  },
);

workerTest("a handler that ignores its signal finishes late and changes nothing", async (t) => {
  const { flow, aborted, started, release } = waitingFlow("cancel_ignored", {
    honourSignal: false,
  });
  const { logs, status } = await t.run(flow, { listen: true });
  const run = await startFlow(t.sql, { flowSlug: "cancel_ignored", input: { n: 1 } });
  await started.promise;
  await cancelRun(t.sql, { runId: run.run_id });
  await eventually("the handler's signal aborted", () => aborted.length === 1);
  await eventually("the slot freed", async () => (await status()).inFlight === 0);

  release.open("finished anyway");
  await eventually(
    "the late result ignored",
    () => logs.some((l) => l.msg.startsWith("handler settled after its task")),
  );
  assert.deepEqual(await task(t.sql, run.run_id), {
    status: "cancelled",
    attempts_count: 1,
    output: null,
    error_message: "cancelled: cancel_run gave no reason",
  });
  const [row] = await t.sql`select status, output from pgflow.runs where run_id = ${run.run_id}`;
  assert.deepEqual({ ...row }, { status: "cancelled", output: null });
});

workerTest("a forged cancel notification aborts nothing; the run completes", async (t) => {
  const aborted = new Map<number, unknown>();
  const running = new Set<number>();
  const release = gate<string>();
  const flow = new Flow<{ n: number }>({ slug: "cancel_forged" }).step(
    { slug: "wait" },
    (input, context) => {
      running.add(input.run.n);
      return new Promise<string>((resolve, reject) => {
        context.signal.addEventListener("abort", () => {
          aborted.set(input.run.n, context.signal.reason);
          reject(context.signal.reason);
        });
        release.promise.then(resolve);
      });
    },
  );
  await t.run(flow, { listen: true, heartbeatIntervalMs: 600_000 });
  const forged = await startFlow(t.sql, { flowSlug: "cancel_forged", input: { n: 1 } });
  const real = await startFlow(t.sql, { flowSlug: "cancel_forged", input: { n: 2 } });
  await eventually("both handlers running", () => running.size === 2);

  // Anyone may NOTIFY: the worker checks in SQL before it aborts anything. The real
  // cancellation's notification comes after the forged one, so once it has taken effect the
  // check the forged one triggered has run too.
  await t.sql`select pg_notify('pgflow:cancel:cancel_forged', ${forged.run_id})`;
  await cancelRun(t.sql, { runId: real.run_id });
  await eventually("the real cancellation aborted its handler", () => aborted.has(2));
  assert.equal(aborted.has(1), false);

  release.open("done");
  const done = await waitForRun(t.sql, forged.run_id);
  assert.deepEqual(done.output, { wait: "done" });
});

workerTest("a cancelled run, resumed, finishes on the worker", async (t) => {
  let calls = 0;
  const started = gate();
  const flow = new Flow<{ n: number }>({ slug: "cancel_resume" })
    .step({ slug: "first" }, (input) => input.run.n + 1)
    .step({ slug: "second", dependsOn: ["first"] }, (input, context) => {
      calls++;
      if (calls > 1) return input.first * 10;
      started.open();
      return new Promise<number>((_, reject) =>
        context.signal.addEventListener("abort", () => reject(context.signal.reason))
      );
    });
  await t.run(flow, { listen: true });
  const run = await startFlow(t.sql, { flowSlug: "cancel_resume", input: { n: 1 } });
  await started.promise;
  await cancelRun(t.sql, { runId: run.run_id });
  await eventually(
    "the handler aborted",
    async () => (await task2(t.sql, run.run_id)) === "cancelled",
  );
  await resumeRun(t.sql, run.run_id);
  const done = await waitForRun(t.sql, run.run_id);
  assert.deepEqual(done.output, { second: 20 });
  assert.equal(calls, 2, "first ran once; second ran again after the resume");
});

async function task2(sql: Sql, runId: string) {
  const [row] = await sql`
    select status from pgflow.step_tasks where run_id = ${runId} and step_slug = 'second'`;
  return row?.status;
}
