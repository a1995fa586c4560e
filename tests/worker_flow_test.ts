/** Flows end to end through createWorker: the spec's example, maps, context, outputs, errors. */
import assert from "node:assert/strict";
import analyzeWebsite from "../examples/analyze_website.ts";
import { startFlow } from "../src/db/runs.ts";
import { Flow } from "../src/dsl/mod.ts";
import type { StepContext } from "../src/dsl/context.ts";
import { eventually } from "./_support/eventually.ts";
import { waitForRun, workerTest } from "./_support/worker.ts";

workerTest("the spec's analyze_website flow runs end to end through createWorker", async (t) => {
  const { first, status, worker } = await t.start(analyzeWebsite);
  assert.deepEqual(
    { workerId: first.workerId, state: first.state, flow: first.flow },
    { workerId: worker.workerId, state: "starting", flow: "analyze_website" },
  );
  assert.match(first.workerId, /^[0-9a-f-]{36}$/);
  await eventually("worker running", async () => (await status()).state === "running");

  const run = await startFlow(t.sql, {
    flowSlug: "analyze_website",
    input: { url: "https://example.com" },
  });
  const done = await waitForRun(t.sql, run.run_id);
  assert.deepEqual(done.output, {
    saveToDb: {
      status: "success",
      url: "https://example.com",
      label: "positive",
      summary: "Welcome to example.com.",
    },
  });
  const tasks = await t.sql<
    { step_slug: string; status: string; attempts_count: number; last_worker_id: string }[]
  >`
    select step_slug, status, attempts_count, last_worker_id from pgflow.step_tasks
    where run_id = ${run.run_id} order by step_slug`;
  assert.deepEqual(tasks.map((task) => [task.step_slug, task.status, task.attempts_count]), [
    ["saveToDb", "completed", 1],
    ["sentiment", "completed", 1],
    ["summary", "completed", 1],
    ["website", "completed", 1],
  ]);
  assert.ok(tasks.every((task) => task.last_worker_id === worker.workerId));
  const [registered] = await t.sql`
    select queue_name, function_name, stopped_at from pgflow.workers where worker_id = ${worker.workerId}`;
  assert.deepEqual(registered, {
    queue_name: "analyze_website",
    function_name: "analyze_website",
    stopped_at: null,
  });
  // The run completes when the last report commits; the worker counts it once the answer is back.
  await eventually(
    "the worker counts 4 completed tasks",
    async () => (await status()).tasksCompleted === 4,
  );

  await worker.stop();
  assert.equal((await status()).state, "stopped");
  const [stopped] = await t
    .sql`select stopped_at from pgflow.workers where worker_id = ${worker.workerId}`;
  assert.ok(stopped.stopped_at instanceof Date);
});

workerTest("a root map runs one task per element and keeps order and falsy values", async (t) => {
  const flow = new Flow<(number | boolean | string | null)[]>({ slug: "root_map" })
    .map({ slug: "same" }, (element) => element)
    .map({ slug: "kinds", array: "same" }, (element) => element === null ? "null" : typeof element);
  await t.run(flow);
  const run = await startFlow(t.sql, { flowSlug: "root_map", input: [0, false, "", null, 7] });
  const done = await waitForRun(t.sql, run.run_id);
  assert.deepEqual(done.output, { kinds: ["number", "boolean", "string", "null", "number"] });
  const [same] = await t.sql`
    select output from pgflow.step_states ss
    join lateral (select jsonb_agg(output order by task_index) as output from pgflow.step_tasks
                  where run_id = ss.run_id and step_slug = ss.step_slug) o on true
    where run_id = ${run.run_id} and step_slug = 'same'`;
  assert.deepEqual(same.output, [0, false, "", null, 7]);
});

workerTest("a map over an array step, then a step that joins the results", async (t) => {
  const flow = new Flow<{ words: string }>({ slug: "words" })
    .array({ slug: "split" }, ({ run }) => run.words.split(" ").filter(Boolean))
    .map({ slug: "upper", array: "split" }, (word) => word.toUpperCase())
    .step({ slug: "join", dependsOn: ["upper"] }, ({ upper }) => upper.join("-"));
  await t.run(flow, { maxConcurrent: 3, batchSize: 2 });
  const run = await startFlow(t.sql, { flowSlug: "words", input: { words: "a b c d e f g" } });
  assert.deepEqual((await waitForRun(t.sql, run.run_id)).output, { join: "A-B-C-D-E-F-G" });
  // An empty array completes the map at once and the join still runs.
  const empty = await startFlow(t.sql, { flowSlug: "words", input: { words: "" } });
  assert.deepEqual((await waitForRun(t.sql, empty.run_id)).output, { join: "" });
});

workerTest(
  "handlers get the context: env, sql, supabase, signals, raw message, task, config",
  async (t) => {
    const seen: Record<string, unknown>[] = [];
    const flow = new Flow({ slug: "ctx" }).step(
      { slug: "look" },
      async (_input, context: StepContext) => {
        const [row] = await context.sql<{ one: number }[]>`select 1 as one`;
        seen.push({
          env: context.env.EDGEFLOW_TEST_VALUE,
          sql: row.one,
          supabase: typeof context.supabase?.from,
          sameSupabase: context.supabase === context.supabase,
          signal: context.signal.aborted,
          shutdown: context.shutdownSignal.aborted,
          enqueuedAt: context.rawMessage.enqueued_at instanceof Date,
          readCt: context.rawMessage.read_ct,
          message: context.rawMessage.message.step_slug,
          stepTask: [
            context.stepTask.step_slug,
            context.stepTask.task_index,
            context.stepTask.msg_id === context.rawMessage.msg_id,
          ],
          config: [
            context.workerConfig.maxConcurrent,
            "connectionString" in context.workerConfig,
            context.workerConfig.flow,
          ],
        });
        return "ok";
      },
    );
    await t.run(flow, {
      env: {
        EDGEFLOW_TEST_VALUE: "from env",
        SUPABASE_URL: "http://127.0.0.1:54321",
        SUPABASE_SERVICE_ROLE_KEY: undefined,
        SUPABASE_SECRET_KEYS: '{"default":"sb_secret_test"}',
      },
      maxConcurrent: 4,
    });
    const run = await startFlow(t.sql, { flowSlug: "ctx", input: {} });
    await waitForRun(t.sql, run.run_id);
    assert.deepEqual(seen, [{
      env: "from env",
      sql: 1,
      supabase: "function",
      sameSupabase: true,
      signal: false,
      shutdown: false,
      enqueuedAt: true,
      readCt: 1,
      message: "look",
      stepTask: ["look", 0, true],
      config: [4, false, "ctx"],
    }]);
  },
);

workerTest(
  "a non-JSON output fails the task with a clear error; the worker keeps going",
  async (t) => {
    type Kind = "function" | "bigint" | "cycle" | "undefined" | "fine";
    const flow = new Flow<{ kind: Kind }>({ slug: "bad_output", maxAttempts: 1 })
      .step({ slug: "produce" }, ({ run }) => {
        const cycle: Record<string, unknown> = {};
        cycle.self = cycle;
        const outputs: Record<Kind, unknown> = {
          function: { fn: () => 1 },
          bigint: { n: 10n },
          cycle,
          undefined: undefined,
          fine: { ok: true },
        };
        return outputs[run.kind] as { ok: boolean };
      });
    const { worker } = await t.run(flow);
    const expected: Record<Exclude<Kind, "fine">, RegExp> = {
      function: /returned a value that is not JSON: the value at key "fn" is a function/,
      bigint: /returned a value that is not JSON: .*BigInt/i,
      cycle: /returned a value that is not JSON: .*circular/i,
      undefined: /returned a value that is not JSON: got undefined/,
    };
    for (const [kind, pattern] of Object.entries(expected)) {
      const run = await startFlow(t.sql, { flowSlug: "bad_output", input: { kind } });
      await waitForRun(t.sql, run.run_id, "failed");
      const [task] = await t.sql`
      select status, error_message from pgflow.step_tasks where run_id = ${run.run_id}`;
      assert.equal(task.status, "failed");
      assert.match(task.error_message, pattern);
      assert.match(task.error_message, /step "produce" of flow "bad_output"/);
    }
    const fine = await startFlow(t.sql, { flowSlug: "bad_output", input: { kind: "fine" } });
    assert.deepEqual((await waitForRun(t.sql, fine.run_id)).output, { produce: { ok: true } });
    assert.equal(worker.state, "running");
  },
);

workerTest(
  "a thrown error is stored with its message (as pgflow stores it), truncated",
  async (t) => {
    const flow = new Flow({ slug: "throws", maxAttempts: 1 })
      .step({ slug: "boom" }, function explode(): string {
        throw new RangeError("value out of range: " + "x".repeat(5_000));
      });
    await t.run(flow);
    const run = await startFlow(t.sql, { flowSlug: "throws", input: {} });
    await waitForRun(t.sql, run.run_id, "failed");
    const [task] = await t
      .sql`select error_message from pgflow.step_tasks where run_id = ${run.run_id}`;
    assert.match(task.error_message, /^value out of range: x+/);
    assert.ok(task.error_message.length <= 2_000, `length ${task.error_message.length}`);
    assert.match(task.error_message, /\[truncated\]$/);

    const short = new Flow({ slug: "throws_short", maxAttempts: 1 })
      .step({ slug: "boom" }, function explode(): string {
        throw new Error("short");
      });
    await t.run(short);
    const run2 = await startFlow(t.sql, { flowSlug: "throws_short", input: {} });
    await waitForRun(t.sql, run2.run_id, "failed");
    const [task2] = await t
      .sql`select error_message from pgflow.step_tasks where run_id = ${run2.run_id}`;
    // The stack goes to the worker's log, not to error_message.
    assert.equal(task2.error_message, "short");
  },
);
