/** Failures over time: retries with backoff, timeouts, handlers that never settle. */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import { Flow } from "../src/dsl/mod.ts";
import { advanceSeconds } from "./_support/clock.ts";
import { eventually } from "./_support/eventually.ts";
import { waitForRun, workerTest } from "./_support/worker.ts";

workerTest(
  "a failing task is retried after base_delay * 2^attempts, then fails the run",
  async (t) => {
    let attempts = 0;
    const flow = new Flow({ slug: "flaky", maxAttempts: 2, baseDelay: 30 })
      .step({ slug: "always_fails" }, (): string => {
        attempts++;
        throw new Error(`attempt ${attempts} failed`);
      });
    const { worker } = await t.run(flow);
    const run = await startFlow(t.sql, { flowSlug: "flaky", input: {} });

    // After the first failure the task waits, queued, its message hidden for 30 * 2^1 = 60 s.
    const waiting = await eventually("the first failure", async () => {
      const [row] = await t.sql`
      select t.status, t.attempts_count, t.error_message,
             round(extract(epoch from q.vt - clock_timestamp()))::int as hidden_for
      from pgflow.step_tasks t join pgmq.q_flaky q on q.msg_id = t.message_id
      where t.run_id = ${run.run_id}`;
      return row?.status === "queued" && row.attempts_count === 1 && row;
    });
    assert.equal(waiting.attempts_count, 1);
    assert.match(waiting.error_message, /^attempt 1 failed/);
    assert.equal(waiting.hidden_for, 60);

    // 50 s later the retry is not due: the worker keeps polling and leaves it alone.
    await advanceSeconds(t.sql, 50);
    const reads = worker.pollStats.reads;
    await eventually("two more polls", () => worker.pollStats.reads >= reads + 2);
    assert.equal(attempts, 1, "not retried before its delay");
    const [still] = await t.sql`
      select status, attempts_count from pgflow.step_tasks where run_id = ${run.run_id}`;
    assert.deepEqual(still, { status: "queued", attempts_count: 1 });

    // At 60 s it is due: the worker, polling, runs the second attempt, which fails the run.
    await advanceSeconds(t.sql, 10);
    await waitForRun(t.sql, run.run_id, "failed");
    assert.equal(attempts, 2);
    const [task] = await t.sql`
    select status, attempts_count, error_message from pgflow.step_tasks where run_id = ${run.run_id}`;
    assert.deepEqual([task.status, task.attempts_count], ["failed", 2]);
    assert.match(task.error_message, /^attempt 2 failed/);
  },
);

workerTest(
  "a handler that ignores its signal is aborted and failed at the step timeout",
  async (t) => {
    const aborted: string[] = [];
    const flow = new Flow<{ late: boolean }>({ slug: "slow", maxAttempts: 1, timeout: 5 })
      .step({ slug: "stuck", timeout: 1 }, ({ run }, context) => {
        context.signal.addEventListener("abort", () => aborted.push(String(context.signal.reason)));
        // Ignores the signal: never settles, or settles well after the timeout.
        return new Promise<string>((resolve) => {
          if (run.late) setTimeout(() => resolve("too late"), 1_500);
        });
      });
    const { logs } = await t.run(flow);
    const started = Date.now();
    const never = await startFlow(t.sql, { flowSlug: "slow", input: { late: false } });
    const late = await startFlow(t.sql, { flowSlug: "slow", input: { late: true } });
    await waitForRun(t.sql, never.run_id, "failed", 5_000);
    await waitForRun(t.sql, late.run_id, "failed", 5_000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1_000 && elapsed < 3_000, `failed after ${elapsed} ms`);

    const tasks = await t.sql`
    select status, output, error_message from pgflow.step_tasks
    where run_id in (${never.run_id}, ${late.run_id})`;
    for (const task of tasks) {
      assert.equal(task.status, "failed");
      assert.equal(task.output, null);
      assert.match(
        task.error_message,
        /^timeout: step "stuck" of flow "slow" did not finish within 1 s; it was aborted$/,
      );
    }
    assert.equal(aborted.length, 2);
    assert.match(aborted[0], /TaskTimeoutError/);
    // The late result is ignored (and said so in the log), not written over the failure.
    await eventually(
      "the late result to be logged",
      () => logs.some((record) => record.msg.includes("result ignored")),
    );
    const [after] = await t
      .sql`select status, output from pgflow.step_tasks where run_id = ${late.run_id}`;
    assert.deepEqual(after, { status: "failed", output: null });
  },
);

workerTest(
  "a handler that never settles does not stop the worker from running other tasks",
  async (t) => {
    const flow = new Flow<{ hang: boolean; n: number }>({ slug: "hang", maxAttempts: 3 })
      .step({ slug: "work" }, ({ run }) => run.hang ? new Promise<number>(() => {}) : run.n * 2);
    const { worker } = await t.run(flow, { maxConcurrent: 3, shutdownGraceMs: 200 });
    const hung = await startFlow(t.sql, { flowSlug: "hang", input: { hang: true, n: 0 } });
    await eventually("the hanging task to start", async () => {
      const [task] = await t
        .sql`select status from pgflow.step_tasks where run_id = ${hung.run_id}`;
      return task.status === "started";
    });
    const runs = [];
    for (let n = 1; n <= 8; n++) {
      runs.push(
        await startFlow(t.sql, { flowSlug: "hang", input: { hang: false, n } }),
      );
    }
    for (const [index, run] of runs.entries()) {
      assert.deepEqual((await waitForRun(t.sql, run.run_id)).output, { work: (index + 1) * 2 });
    }
    assert.equal(worker.status().inFlight, 1);

    // On shutdown the hung handler gets shutdownGraceMs, then is aborted and reported failed,
    // so it is retried without waiting for its timeout.
    await worker.stop();
    const [task] = await t.sql`
    select status, attempts_count, error_message from pgflow.step_tasks where run_id = ${hung.run_id}`;
    assert.equal(task.status, "queued");
    assert.equal(task.attempts_count, 1);
    assert.match(
      task.error_message,
      /^shutdown: the worker stopped before the handler finished \(shutdownGraceMs of 200 ms passed\)/,
    );
  },
);
