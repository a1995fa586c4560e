import assert from "node:assert/strict";
import postgres from "postgres";
import { dbTest } from "./_support/db.ts";
import { define, takeTasks } from "./_support/drive.ts";
import { addStep, type AddStepArgs, createFlow, isValidSlug } from "../src/db/definitions.ts";
import { getRunWithStates, startFlow } from "../src/db/runs.ts";
import { calculateRetryDelay, completeTask, failTask, startTasks } from "../src/db/tasks.ts";
import { setVtBatch } from "../src/db/queue.ts";
import { pruneDataOlderThan } from "../src/db/maintenance.ts";
import { markWorkerStopped } from "../src/db/workers.ts";
import type { Sql } from "../src/db/connect.ts";
import { advanceClock } from "./_support/clock.ts";

/** Asserts the call fails with a message matching `pattern` and leaves the definition tables as they were. */
async function rejectsCleanly(sql: Sql, call: () => Promise<unknown>, pattern: RegExp) {
  const before = await snapshot(sql);
  await assert.rejects(call(), pattern);
  assert.deepEqual(await snapshot(sql), before, "a failed call writes nothing");
}

async function snapshot(sql: Sql) {
  const [row] = await sql`
    select (select count(*) from pgflow.flows)::int as flows,
           (select count(*) from pgflow.steps)::int as steps,
           (select count(*) from pgflow.deps)::int as deps,
           (select count(*) from pgflow.runs)::int as runs,
           (select count(*) from pgmq.list_queues())::int as queues`;
  return row;
}

dbTest("is_valid_slug accepts identifiers and rejects the rest", async ({ sql }) => {
  for (const slug of ["a", "_x", "step_1", "saveToDb", "A".repeat(128)]) {
    assert.equal(await isValidSlug(sql, slug), true, slug);
  }
  for (const slug of ["", "run", "1a", "a-b", "a b", "é", "a.b", "A".repeat(129)]) {
    assert.equal(await isValidSlug(sql, slug), false, slug);
  }
  const [{ valid }] = await sql`select pgflow.is_valid_slug(null) as valid`;
  assert.equal(valid, false);
});

dbTest("create_flow stores options, creates the queue, and is idempotent", async ({ sql }) => {
  const flow = await createFlow(sql, { flowSlug: "f", maxAttempts: 2, baseDelay: 0, timeout: 9 });
  assert.deepEqual(
    [flow.flow_slug, flow.opt_max_attempts, flow.opt_base_delay, flow.opt_timeout],
    ["f", 2, 0, 9],
  );
  const again = await createFlow(sql, { flowSlug: "f", maxAttempts: 2, baseDelay: 0, timeout: 9 });
  assert.deepEqual(again, flow);
  const queues = await sql`select queue_name from pgmq.list_queues()`;
  assert.deepEqual(queues.map((q) => q.queue_name), ["f"]);
  const [defaults] = await sql`select * from pgflow.create_flow('g')`;
  assert.deepEqual([defaults.opt_max_attempts, defaults.opt_base_delay, defaults.opt_timeout], [
    3,
    5,
    60,
  ]);
});

dbTest("create_flow rejects bad arguments with a clear error", async ({ sql }) => {
  await createFlow(sql, { flowSlug: "exists" });
  const cases: [() => Promise<unknown>, RegExp][] = [
    [
      () => createFlow(sql, { flowSlug: "bad-slug" }),
      /create_flow\('bad-slug'\): flow_slug must match/,
    ],
    [() => createFlow(sql, { flowSlug: "run" }), /create_flow\('run'\): .*not be "run"/],
    [() => createFlow(sql, { flowSlug: "" }), /flow_slug must match/],
    [() => createFlow(sql, { flowSlug: "a".repeat(48) }), /at most 47/],
    [
      () => createFlow(sql, { flowSlug: "f", maxAttempts: -1 }),
      /max_attempts must be between 0 and 1000, got -1/,
    ],
    [
      () => createFlow(sql, { flowSlug: "f", baseDelay: -1 }),
      /base_delay must be between 0 and 86400, got -1/,
    ],
    [
      () => createFlow(sql, { flowSlug: "f", timeout: 0 }),
      /timeout must be between 1 and 86400, got 0/,
    ],
  ];
  for (const [call, pattern] of cases) await rejectsCleanly(sql, call, pattern);
});

dbTest(
  "create_flow and add_step behave as pgflow's on NULL, 0 and repeated calls",
  async ({ url }) => {
    const notices: string[] = [];
    const session = postgres(url, { max: 1, onnotice: (n) => notices.push(n.message) });
    try {
      // NULL options take the defaults; max_attempts 0 is one attempt, no retry.
      const [flow] = await session`
      select * from pgflow.create_flow('n', max_attempts => null, base_delay => null, timeout => null)`;
      assert.deepEqual([flow.opt_max_attempts, flow.opt_base_delay, flow.opt_timeout], [3, 5, 60]);
      const [zero] = await session`select * from pgflow.create_flow('z', max_attempts => 0)`;
      assert.equal(zero.opt_max_attempts, 0);
      const [step] = await session`select * from pgflow.add_step('z', 'a', max_attempts => 0)`;
      assert.equal(step.opt_max_attempts, 0);
      // Again with other options: the existing row, unchanged, and a NOTICE naming it.
      const [again] = await session`select * from pgflow.create_flow('n', timeout => 10)`;
      assert.equal(again.opt_timeout, 60);
      assert.match(
        notices.join("\n"),
        /create_flow\('n'\): the flow exists with .*timeout=60; kept unchanged/,
      );
      const [stepAgain] = await session`select * from pgflow.add_step('z', 'a', timeout => 7)`;
      assert.deepEqual([stepAgain.opt_timeout, stepAgain.opt_max_attempts], [null, 0]);
      assert.match(notices.join("\n"), /add_step\('z', 'a'\): the step exists .*kept unchanged/);
      const [{ timeouts }] = await session`
      select array_agg(coalesce(opt_timeout, -1) order by step_slug) as timeouts from pgflow.steps`;
      assert.deepEqual(timeouts, [-1]);
    } finally {
      await session.end();
    }
  },
);

dbTest("add_step rejects bad arguments with a clear error", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('f');
     select pgflow.add_step('f', 'a');
     select pgflow.add_step('f', 'b');
     select pgflow.add_step('f', 'list');`,
  );
  const step = (args: Partial<Parameters<typeof addStep>[1]>) =>
    addStep(sql, { flowSlug: "f", stepSlug: "s", ...args });
  const cases: [() => Promise<unknown>, RegExp][] = [
    [() => step({ flowSlug: "nope" }), /add_step\('nope', 's'\): flow 'nope' does not exist/],
    [
      () => step({ stepSlug: "run" }),
      /add_step\('f', 'run'\): step_slug must match .*not be "run"/,
    ],
    [() => step({ stepSlug: "9lives" }), /step_slug must match/],
    [
      () => step({ depsSlugs: ["ghost"] }),
      /unknown dependency 'ghost'; add steps in topological order/,
    ],
    [() => step({ depsSlugs: ["s"] }), /cannot depend on itself \(that is a cycle\)/],
    [() => step({ depsSlugs: ["a", "a"] }), /lists a step twice/],
    [
      () => step({ depsSlugs: ["a", "b"], stepType: "map" }),
      /a map step takes at most one dependency.*got 2/,
    ],
    [
      () => step({ stepType: "fanout" as "map" }),
      /step_type must be 'single' or 'map', got 'fanout'/,
    ],
    [() => step({ maxAttempts: -1 }), /max_attempts must be between 0 and 1000, got -1/],
    [() => step({ baseDelay: -2 }), /base_delay must be between 0 and 86400, got -2/],
    [() => step({ timeout: -1 }), /timeout must be between 1 and 86400, got -1/],
    [() => step({ startDelay: -5 }), /start_delay must be between 0 and 604800, got -5/],
    [
      () => step({ stepSlug: "a", depsSlugs: ["b"] }),
      /the step exists with step_type=single and deps=\{\}; asked for step_type=single and deps=\{b\}/,
    ],
  ];
  for (const [call, pattern] of cases) await rejectsCleanly(sql, call, pattern);
});

dbTest("add_step stores the definition, inherits options, and is idempotent", async ({ sql }) => {
  await createFlow(sql, { flowSlug: "f" });
  const a = await addStep(sql, { flowSlug: "f", stepSlug: "a" });
  const mArgs: AddStepArgs = {
    flowSlug: "f",
    stepSlug: "m",
    depsSlugs: ["a"],
    stepType: "map",
    maxAttempts: 7,
    baseDelay: 1,
    timeout: 9,
    startDelay: 3,
  };
  const m = await addStep(sql, mArgs);
  assert.deepEqual(
    [a.step_index, a.deps_count, a.step_type, a.opt_max_attempts, a.opt_timeout],
    [0, 0, "single", null, null],
  );
  assert.deepEqual(
    [
      m.step_index,
      m.deps_count,
      m.step_type,
      m.opt_max_attempts,
      m.opt_base_delay,
      m.opt_timeout,
      m.opt_start_delay,
    ],
    [1, 1, "map", 7, 1, 9, 3],
  );
  const again = await addStep(sql, mArgs);
  assert.deepEqual(again, m);
  const deps = await sql`select dep_slug, step_slug from pgflow.deps`;
  assert.deepEqual(deps.map((d) => [d.dep_slug, d.step_slug]), [["a", "m"]]);
});

dbTest("a flow with a started run cannot get new steps", async ({ sql }) => {
  await define(sql, `select pgflow.create_flow('busy'); select pgflow.add_step('busy', 'a');`);
  await startFlow(sql, { flowSlug: "busy", input: {} });
  await rejectsCleanly(
    sql,
    () => addStep(sql, { flowSlug: "busy", stepSlug: "b" }),
    /the flow has runs in progress/,
  );
});

dbTest("run and task functions reject unknown flows, runs, steps and tasks", async ({ sql }) => {
  await define(sql, `select pgflow.create_flow('f'); select pgflow.add_step('f', 'a');`);
  await createFlow(sql, { flowSlug: "stepless" });
  const run = await startFlow(sql, { flowSlug: "f", input: {} });
  const missingRun = "00000000-0000-4000-8000-000000000000";
  const worker = "11111111-1111-4111-8111-111111111111";
  const key = { runId: run.run_id, stepSlug: "a", taskIndex: 0 };
  const cases: [() => Promise<unknown>, RegExp][] = [
    [
      () => startFlow(sql, { flowSlug: "nope", input: {} }),
      /start_flow\('nope'\): flow 'nope' does not exist/,
    ],
    [() => startFlow(sql, { flowSlug: "stepless", input: {} }), /the flow has no steps/],
    [
      () => sql`select pgflow.start_flow('f', null)`,
      /start_flow\('f'\): input must not be SQL NULL; pass 'null'::jsonb/,
    ],
    [
      () => startTasks(sql, { flowSlug: "nope", msgIds: [1], workerId: worker }),
      /flow 'nope' does not exist/,
    ],
    [
      () => sql`select * from pgflow.start_tasks('f', array[1]::bigint[], null)`,
      /worker_id must not be NULL/,
    ],
    [
      () => completeTask(sql, { ...key, runId: missingRun, output: 1 }),
      /run 00000000-.* does not exist/,
    ],
    [() => completeTask(sql, { ...key, stepSlug: "zzz", output: 1 }), /flow 'f' has no step 'zzz'/],
    [
      () => completeTask(sql, { ...key, taskIndex: 3, output: 1 }),
      /step 'a' of run .* has no task 3/,
    ],
    [
      () => failTask(sql, { ...key, runId: missingRun, errorMessage: "x" }),
      /fail_task\(.*\): run .* does not exist/,
    ],
    [
      () => getRunWithStates(sql, missingRun),
      /get_run_with_states: run 00000000-.* does not exist/,
    ],
    [() => calculateRetryDelay(sql, -1, 1), /base_delay must be >= 0, got -1/],
    [() => calculateRetryDelay(sql, 1, -1), /attempts_count must be >= 0, got -1/],
    [
      () => setVtBatch(sql, { queueName: "f", msgIds: [1, 2], vtOffsets: [1] }),
      /msg_ids has 2 elements but vt_offsets has 1/,
    ],
    [
      () => setVtBatch(sql, { queueName: "nope", msgIds: [1], vtOffsets: [1] }),
      /queue 'nope' does not exist/,
    ],
    [() => pruneDataOlderThan(sql, "-1 day"), /retention_interval must be a non-negative interval/],
    [() => markWorkerStopped(sql, missingRun), /worker 00000000-.* is not registered/],
  ];
  for (const [call, pattern] of cases) await assert.rejects(call(), pattern);
  // The run was not touched by any of the failed calls.
  const [task] = await sql`select status, attempts_count from pgflow.step_tasks`;
  assert.deepEqual(task, { status: "queued", attempts_count: 0 });
});

dbTest("calculate_retry_delay doubles per attempt and caps at int range", async ({ sql }) => {
  assert.equal(await calculateRetryDelay(sql, 5, 0), 5);
  assert.equal(await calculateRetryDelay(sql, 5, 1), 10);
  assert.equal(await calculateRetryDelay(sql, 5, 3), 40);
  assert.equal(await calculateRetryDelay(sql, 0, 10), 0);
  assert.equal(await calculateRetryDelay(sql, 2, 1000), 2147483647);
});

dbTest("set_vt_batch sets each message's own visibility timeout", async ({ sql }) => {
  await define(sql, `select pgflow.create_flow('q'); select pgflow.add_step('q', 'a');`);
  const ids = await sql`select * from pgmq.send_batch('q', array['{}'::jsonb, '{}'::jsonb])`;
  const msgIds = ids.map((r) => Number(Object.values(r)[0]));
  const rows = await setVtBatch(sql, { queueName: "q", msgIds, vtOffsets: [10, 100] });
  assert.equal(rows.length, 2);
  const hidden = await sql`
    select msg_id, round(extract(epoch from vt - clock_timestamp()))::int as s
    from pgmq.q_q where msg_id = any(${msgIds}::bigint[]) order by msg_id`;
  assert.deepEqual(hidden.map((h) => h.s), [10, 100]);
});

dbTest(
  "prune_data_older_than removes old finished runs and archived messages only",
  async ({ sql }) => {
    await define(sql, `select pgflow.create_flow('p'); select pgflow.add_step('p', 'a');`);
    const complete = async (runId: string) => {
      const [task] = (await takeTasks(sql, "p")).filter((t) => t.run_id === runId);
      await completeTask(sql, { runId, stepSlug: "a", taskIndex: 0, output: 0 });
      return task;
    };
    // 31 days ago: one run finished (its message archived), one started and still running.
    const old = await startFlow(sql, { flowSlug: "p", input: 1 });
    await complete(old.run_id);
    const running = await startFlow(sql, { flowSlug: "p", input: 3 });
    await advanceClock(sql, "31 days");
    const recent = await startFlow(sql, { flowSlug: "p", input: 2 });
    await complete(recent.run_id);

    const result = await pruneDataOlderThan(sql, "30 days");
    assert.deepEqual(result, {
      runs: 1,
      step_states: 1,
      step_tasks: 1,
      archived_messages: 1,
      workers: 0,
    });
    const left = await sql`select run_id from pgflow.runs order by run_id`;
    assert.deepEqual(left.map((r) => r.run_id).sort(), [recent.run_id, running.run_id].sort());
    const archived = await sql`select message->>'run_id' as run_id from pgmq.a_p`;
    assert.deepEqual(archived.map((m) => m.run_id), [recent.run_id], "the recent archive stays");
  },
);

dbTest(
  "prune_data_older_than removes stopped and long-silent workers, never live ones",
  async ({ sql }) => {
    const ids = {
      live: "00000000-0000-4000-8000-00000000000a",
      stopped: "00000000-0000-4000-8000-00000000000b",
      silent: "00000000-0000-4000-8000-00000000000c",
      recentlyStopped: "00000000-0000-4000-8000-00000000000d",
    };
    const register = (id: string) => sql`select pgflow.register_worker(${id}::uuid, 'q', 'fn')`;
    // silent's last heartbeat is 2 hours old, stopped stopped 10 minutes ago,
    // recentlyStopped just now, and live sent a heartbeat a second ago.
    await register(ids.silent);
    await advanceClock(sql, "110 minutes");
    await register(ids.stopped);
    await markWorkerStopped(sql, ids.stopped);
    await advanceClock(sql, "10 minutes");
    await register(ids.live);
    await register(ids.recentlyStopped);
    await markWorkerStopped(sql, ids.recentlyStopped);
    await advanceClock(sql, "1 second");
    await sql`select pgflow.worker_heartbeat(${ids.live}::uuid)`;

    assert.equal((await pruneDataOlderThan(sql, "5 minutes")).workers, 2);
    const left = await sql`select worker_id from pgflow.workers order by worker_id`;
    assert.deepEqual(left.map((w) => w.worker_id), [ids.live, ids.recentlyStopped]);
    // Even a zero interval keeps a worker that sent a heartbeat within the hour.
    assert.equal((await pruneDataOlderThan(sql, "0 seconds")).workers, 1);
    const [kept] = await sql`select worker_id from pgflow.workers`;
    assert.equal(kept.worker_id, ids.live);
  },
);
