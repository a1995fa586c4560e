/**
 * cancel_run, resume_run and restart_run on the real engine: what each changes, its errors,
 * its events, and the races with completions and with itself (two connections, one waiting on
 * the other's lock of the run row).
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { someoneWaitsForALock } from "./_support/locks.ts";
import { eventually } from "./_support/eventually.ts";
import {
  define,
  failOne,
  getRun,
  type Handler,
  runUntilIdle,
  stepStatuses,
  takeTasks,
} from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import { cancelledRuns, cancelRun, restartRun, resumeRun } from "../src/db/run_operations.ts";
import { completeTask, failTask } from "../src/db/tasks.ts";
import type { Sql } from "../src/db/connect.ts";
import type { StepTaskRecord } from "../src/db/types.ts";

const DIAMOND = `
  select pgflow.create_flow('diamond', max_attempts => 1);
  select pgflow.add_step('diamond', 'a');
  select pgflow.add_step('diamond', 'b', deps_slugs => array['a']);
  select pgflow.add_step('diamond', 'c', deps_slugs => array['a']);
  select pgflow.add_step('diamond', 'd', deps_slugs => array['b', 'c']);`;

const HANDLERS: Record<string, Handler> = {
  a: () => 1,
  b: (input) => ({ b: input }),
  c: () => "c",
  d: (input) => ({ d: input }),
};

function complete(sql: Sql, task: StepTaskRecord, output: unknown) {
  return completeTask(sql, {
    runId: task.run_id,
    stepSlug: task.step_slug,
    taskIndex: task.task_index,
    output: output as never,
  });
}

/** A diamond run with `a` completed, `b` started (its handler running) and `c` queued. */
async function diamondInFlight(sql: Sql) {
  await define(sql, DIAMOND);
  const run = await startFlow(sql, { flowSlug: "diamond", input: { x: 1 } });
  const [a] = await takeTasks(sql, "diamond");
  await complete(sql, a, 1);
  const [b] = await takeTasks(sql, "diamond", 1);
  assert.equal(b.step_slug, "b");
  return { runId: run.run_id, b };
}

async function tasks(sql: Sql, runId: string) {
  return await sql<
    { step_slug: string; task_index: number; status: string; attempts_count: number }[]
  >`
    select step_slug, task_index, status, attempts_count, error_message, output, message_id
    from pgflow.step_tasks where run_id = ${runId} order by step_slug, task_index`;
}

async function visibleMessages(sql: Sql, flow: string): Promise<number> {
  const [{ n }] = await sql.unsafe(
    `select count(*)::int as n from pgmq.q_${flow} where vt <= clock_timestamp()`,
  );
  return n;
}

/**
 * Runs `first` in a transaction held open, starts `second` (which blocks on the run's lock),
 * then commits `first`; resolves with both outcomes.
 */
async function race<A, B>(
  db: { connect(max?: number): Sql; sql: Sql },
  first: (tx: Sql) => Promise<A>,
  second: (sql: Sql) => Promise<B>,
): Promise<{ first: A; second: PromiseSettledResult<B> }> {
  const one = db.connect(1);
  const two = db.connect(1);
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let firstDone!: (value: A) => void;
  const firstResult = new Promise<A>((resolve) => firstDone = resolve);
  const transaction = one.begin(async (tx) => {
    firstDone(await first(tx as unknown as Sql));
    await held;
  });
  const firstValue = await firstResult;
  const secondCall = second(two);
  const settled = Promise.allSettled([secondCall]);
  await someoneWaitsForALock(db.sql);
  release();
  await transaction;
  const [secondResult] = await settled;
  return { first: firstValue, second: secondResult };
}

dbTest("cancel_run ends the run, its open steps and tasks, and archives their messages", async ({
  sql,
  connect,
}) => {
  const { runId, b } = await diamondInFlight(sql);
  const listener = connect(1);
  const events: Record<string, unknown>[] = [];
  const cancels: string[] = [];
  await listener.listen(`pgflow:run:${runId}`, (payload) => events.push(JSON.parse(payload)));
  await listener.listen("pgflow:cancel:diamond", (payload) => cancels.push(payload));

  const run = await cancelRun(sql, { runId, reason: "operator said so" });
  assert.equal(run.status, "cancelled");
  assert.ok(run.cancelled_at instanceof Date);
  assert.deepEqual(await stepStatuses(sql, runId), {
    a: "completed",
    b: "cancelled",
    c: "cancelled",
    d: "created",
  });
  const rows = await tasks(sql, runId);
  assert.deepEqual(rows.map((t) => [t.step_slug, t.status]), [
    ["a", "completed"],
    ["b", "cancelled"],
    ["c", "cancelled"],
  ]);
  const [state] = await sql`
    select error_message, cancelled_at from pgflow.step_states where run_id = ${runId} and step_slug = 'c'`;
  assert.equal(state.error_message, "cancelled: operator said so");
  assert.equal(await visibleMessages(sql, "diamond"), 0);
  const [{ archived }] = await sql`select count(*)::int as archived from pgmq.a_diamond`;
  assert.equal(archived, 3, "a's, b's and c's messages are archived");
  assert.deepEqual(await takeTasks(sql, "diamond"), [], "no further task starts");
  assert.deepEqual(await cancelledRuns(sql, [runId, crypto.randomUUID()]), [runId]);

  await eventually("run:cancelled", () => events.some((e) => e.event === "run:cancelled"));
  assert.deepEqual(events.map((e) => e.event), [
    "step:b:cancelled",
    "step:c:cancelled",
    "run:cancelled",
  ]);
  const cancelled = events.at(-1)!;
  assert.equal(cancelled.status, "cancelled");
  assert.equal(cancelled.flow_slug, "diamond");
  assert.ok(cancelled.cancelled_at);
  assert.equal(cancelled.reason, undefined, "pg_notify carries no free text");
  await eventually("the worker notification", () => cancels.length > 0);
  assert.deepEqual(cancels, [runId]);

  // The handler of b ignored its signal and reports late: nothing changes.
  const late = await complete(sql, b, { late: true });
  assert.equal(late.status, "cancelled");
  assert.equal(late.output, null);
  const lateFailure = await failOne(sql, b, "late error");
  assert.equal(lateFailure.status, "cancelled");
  assert.equal(lateFailure.error_message, "cancelled: operator said so");
  assert.deepEqual(await tasks(sql, runId), rows);
  assert.equal((await getRun(sql, runId)).status, "cancelled");

  // Cancelling again returns the run as it is, without new events.
  const again = await cancelRun(sql, { runId, reason: "twice" });
  assert.deepEqual(again, run);
  await sql`select pg_notify('pgflow:run:' || ${runId}, '{"event":"marker"}')`;
  await eventually("marker", () => events.some((e) => e.event === "marker"));
  assert.equal(events.filter((e) => e.event === "run:cancelled").length, 1);
});

dbTest("cancel_run, resume_run and restart_run explain what they refuse", async ({ sql }) => {
  await define(sql, DIAMOND);
  const unknown = "00000000-0000-4000-8000-000000000000";
  for (
    const call of [
      () => cancelRun(sql, { runId: unknown }),
      () => resumeRun(sql, unknown),
      () => restartRun(sql, unknown),
    ]
  ) {
    await assert.rejects(call(), (error: Error & { code?: string }) => {
      assert.equal(error.code, "P0002");
      assert.match(error.message, new RegExp(`run ${unknown} does not exist`));
      return true;
    });
  }
  await assert.rejects(
    sql`select pgflow.cancel_run(null)`,
    /cancel_run\(NULL\): run NULL does not exist/,
  );

  const running = await startFlow(sql, { flowSlug: "diamond", input: {} });
  await assert.rejects(
    cancelRun(sql, { runId: running.run_id, reason: "x".repeat(1001) }),
    /cancel_run\(.*\): reason must be at most 1000 characters, got 1001/,
  );
  await assert.rejects(resumeRun(sql, running.run_id), (error: Error & { code?: string }) => {
    assert.equal(error.code, "55000");
    assert.match(
      error.message,
      /the run is running; only a failed or cancelled run can be resumed/,
    );
    return true;
  });
  await assert.rejects(
    restartRun(sql, running.run_id),
    /the run is still running; cancel_run it first, or wait until it ends/,
  );

  await runUntilIdle(sql, "diamond", HANDLERS);
  assert.equal((await getRun(sql, running.run_id)).status, "completed");
  await assert.rejects(
    cancelRun(sql, { runId: running.run_id }),
    /the run already completed at .*; there is nothing to cancel/,
  );
  await assert.rejects(
    resumeRun(sql, running.run_id),
    /the run completed at .*; there is nothing to resume \(restart_run starts it again\)/,
  );

  const failing = await startFlow(sql, { flowSlug: "diamond", input: {} });
  const [a] = await takeTasks(sql, "diamond");
  await failOne(sql, a, "boom");
  assert.equal((await getRun(sql, failing.run_id)).status, "failed");
  await assert.rejects(
    cancelRun(sql, { runId: failing.run_id }),
    /the run already failed at .*; resume_run continues it, restart_run starts it again/,
  );
  // The flow gains a step after the run failed: resuming it would leave that step out.
  await sql`select pgflow.add_step('diamond', 'e', deps_slugs => array['d'])`;
  await assert.rejects(
    resumeRun(sql, failing.run_id),
    /resume_run\(.*\): flow 'diamond' changed since the run started \(steps added: e\); restart_run starts a new run/,
  );
  assert.equal((await getRun(sql, failing.run_id)).status, "failed", "nothing half-written");
});

dbTest("resume_run continues a cancelled run: fresh attempts, completed outputs kept", async ({
  sql,
  connect,
}) => {
  const { runId } = await diamondInFlight(sql);
  await cancelRun(sql, { runId });
  const before = await tasks(sql, runId);
  const listener = connect(1);
  const events: string[] = [];
  await listener.listen(`pgflow:run:${runId}`, (payload) => events.push(JSON.parse(payload).event));

  const run = await resumeRun(sql, runId);
  assert.equal(run.status, "started");
  assert.equal(run.cancelled_at, null);
  assert.equal(run.remaining_steps, 3);
  assert.deepEqual(await stepStatuses(sql, runId), {
    a: "completed",
    b: "started",
    c: "started",
    d: "created",
  });
  const after = await tasks(sql, runId);
  assert.deepEqual(
    after.map((t) => [t.step_slug, t.status, t.attempts_count]),
    [["a", "completed", 1], ["b", "queued", 0], ["c", "queued", 0]],
  );
  const msg = (rows: typeof before, slug: string) =>
    (rows.find((t) => t.step_slug === slug) as unknown as { message_id: number }).message_id;
  assert.notEqual(msg(after, "b"), msg(before, "b"), "a new message");
  assert.equal(await visibleMessages(sql, "diamond"), 2);

  const done = await runUntilIdle(sql, "diamond", { ...HANDLERS, a: () => "never again" });
  assert.deepEqual(done.map((t) => t.step_slug).sort(), ["b", "c", "d"], "a is not run again");
  const final = await getRun(sql, runId);
  assert.equal(final.status, "completed");
  assert.deepEqual(final.output, {
    d: { d: { run: { x: 1 }, b: { b: { run: { x: 1 }, a: 1 } }, c: "c" } },
  });
  await eventually("run:completed", () => events.includes("run:completed"));
  assert.deepEqual(events.slice(0, 3), ["run:resumed", "step:b:started", "step:c:started"]);
});

dbTest("resume_run continues a failed map where it failed", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('mapped', max_attempts => 1);
     select pgflow.add_step('mapped', 'each', step_type => 'map');`,
  );
  const run = await startFlow(sql, { flowSlug: "mapped", input: [10, 20, 30] });
  const started = await takeTasks(sql, "mapped");
  assert.equal(started.length, 3);
  await complete(sql, started[0], "first");
  await failOne(sql, started[1], "element 20 broke");
  assert.equal((await getRun(sql, run.run_id)).status, "failed");

  const resumed = await resumeRun(sql, run.run_id);
  assert.equal(resumed.status, "started");
  assert.equal(resumed.failed_at, null);
  const rows = await tasks(sql, run.run_id);
  assert.deepEqual(rows.map((t) => [t.task_index, t.status, t.attempts_count]), [
    [0, "completed", 1],
    [1, "queued", 0],
    [2, "queued", 0],
  ]);
  const [state] = await sql`
    select status, remaining_tasks, error_message from pgflow.step_states where run_id = ${run.run_id}`;
  assert.deepEqual({ ...state }, { status: "started", remaining_tasks: 2, error_message: null });

  await runUntilIdle(sql, "mapped", { each: (n) => `again ${n}` });
  const final = await getRun(sql, run.run_id);
  assert.equal(final.status, "completed");
  assert.deepEqual(final.output, { each: ["first", "again 20", "again 30"] });
});

dbTest("a resumed task retries with fresh attempts and can fail the run again", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('flaky', max_attempts => 2, base_delay => 0);
     select pgflow.add_step('flaky', 'only');`,
  );
  const run = await startFlow(sql, { flowSlug: "flaky", input: {} });
  for (let attempt = 0; attempt < 2; attempt++) {
    const [task] = await takeTasks(sql, "flaky");
    await failOne(sql, task, `attempt ${attempt}`);
  }
  assert.equal((await getRun(sql, run.run_id)).status, "failed");
  await resumeRun(sql, run.run_id);
  for (let attempt = 0; attempt < 2; attempt++) {
    const [task] = await takeTasks(sql, "flaky");
    assert.ok(task, `attempt ${attempt} after the resume`);
    const row = await failOne(sql, task, `again ${attempt}`);
    assert.equal(row.attempts_count, attempt + 1);
  }
  assert.equal((await getRun(sql, run.run_id)).status, "failed");
});

dbTest(
  "cancel during completion: the completion commits first, the cancel sees its result",
  async (db) => {
    const { sql } = db;
    const { runId, b } = await diamondInFlight(sql);
    // Completing b while a cancel waits: the cancel then closes what is open, c included.
    const { second } = await race(
      db,
      (tx) => complete(tx, b, "b done"),
      (other) => cancelRun(other, { runId, reason: "race" }),
    );
    assert.equal(second.status, "fulfilled");
    assert.deepEqual(await stepStatuses(sql, runId), {
      a: "completed",
      b: "completed",
      c: "cancelled",
      d: "created",
    });
    assert.equal(await visibleMessages(sql, "diamond"), 0);

    // The last task's completion completes the run while a cancel waits: the cancel is refused.
    await define(sql, `select pgflow.create_flow('solo'); select pgflow.add_step('solo', 'only');`);
    const solo = await startFlow(sql, { flowSlug: "solo", input: {} });
    const [only] = await takeTasks(sql, "solo");
    const refused = await race(
      db,
      (tx) => complete(tx, only, 42),
      (other) => cancelRun(other, { runId: solo.run_id }),
    );
    assert.equal(refused.second.status, "rejected");
    assert.match(
      String((refused.second as PromiseRejectedResult).reason),
      /the run already completed at .*; there is nothing to cancel/,
    );
    assert.deepEqual((await getRun(sql, solo.run_id)).output, { only: 42 });
  },
);

dbTest(
  "cancel during completion: the cancel commits first, the completion changes nothing",
  async (db) => {
    const { sql } = db;
    const { runId, b } = await diamondInFlight(sql);
    const { second } = await race(
      db,
      (tx) => cancelRun(tx, { runId }),
      (other) => complete(other, b, "too late"),
    );
    assert.equal(second.status, "fulfilled");
    const task = (second as PromiseFulfilledResult<Awaited<ReturnType<typeof complete>>>).value;
    assert.equal(task.status, "cancelled");
    assert.equal(task.output, null);
    assert.deepEqual(await stepStatuses(sql, runId), {
      a: "completed",
      b: "cancelled",
      c: "cancelled",
      d: "created",
    });
    assert.equal((await getRun(sql, runId)).status, "cancelled");

    // A batch report (complete_tasks) racing a cancel changes nothing either.
    const [row] = await sql`
    select * from pgflow.complete_tasks(array[${runId}]::uuid[], array['b'], array[0], array['1'::jsonb])`;
    assert.equal(row.status, "cancelled");
    // And a retryable failure does not bring the task back.
    const failed = await failTask(sql, { runId, stepSlug: "b", taskIndex: 0, errorMessage: "x" });
    assert.equal(failed.status, "cancelled");
  },
);

dbTest(
  "resume twice at once: the second waits, then finds the run running and is refused",
  async (db) => {
    const { sql } = db;
    const { runId } = await diamondInFlight(sql);
    await cancelRun(sql, { runId });
    const { first, second } = await race(
      db,
      (tx) => resumeRun(tx, runId),
      (other) => resumeRun(other, runId),
    );
    assert.equal(first.status, "started");
    assert.equal(second.status, "rejected");
    assert.match(
      String((second as PromiseRejectedResult).reason),
      /the run is running; only a failed or cancelled run can be resumed/,
    );
    assert.equal(await visibleMessages(sql, "diamond"), 2, "one set of messages, not two");
  },
);

dbTest("a cancel waiting on a resume cancels what the resume queued", async (db) => {
  const { sql } = db;
  const { runId } = await diamondInFlight(sql);
  await cancelRun(sql, { runId });
  const { second } = await race(
    db,
    (tx) => resumeRun(tx, runId),
    (other) => cancelRun(other, { runId }),
  );
  assert.equal(second.status, "fulfilled");
  assert.equal((await getRun(sql, runId)).status, "cancelled");
  assert.equal(await visibleMessages(sql, "diamond"), 0);
  assert.deepEqual(await takeTasks(sql, "diamond"), []);
});

dbTest("restart_run starts the same flow and input as a new run linked to the old one", async ({
  sql,
  connect,
}) => {
  const { runId } = await diamondInFlight(sql);
  await cancelRun(sql, { runId });
  const listener = connect(1);
  const events: Record<string, unknown>[] = [];
  await listener.listen(`pgflow:run:${runId}`, (payload) => events.push(JSON.parse(payload)));

  const restarted = await restartRun(sql, runId);
  assert.notEqual(restarted.run_id, runId);
  assert.equal(restarted.restart_of_run_id, runId);
  assert.equal(restarted.status, "started");
  assert.deepEqual(restarted.input, { x: 1 });
  assert.equal((await getRun(sql, runId)).status, "cancelled", "the original stays as it was");
  await runUntilIdle(sql, "diamond", HANDLERS);
  assert.equal((await getRun(sql, restarted.run_id)).status, "completed");

  // A completed run restarts too, and a restart of a restart links to its own original.
  const again = await restartRun(sql, restarted.run_id);
  assert.equal(again.restart_of_run_id, restarted.run_id);
  await eventually("run:restarted", () => events.some((e) => e.event === "run:restarted"));
  assert.equal(events.find((e) => e.event === "run:restarted")!.restarted_as, restarted.run_id);

  // Pruning the original keeps the restart, without the link.
  await sql`select pgflow.advance_clock('2 days')`;
  await runUntilIdle(sql, "diamond", HANDLERS);
  const [{ result }] = await sql`select pgflow.prune_finished_data('1 day') as result`;
  assert.equal(result.runs, 2, "the cancelled run is pruned like a finished one");
  const left = await sql`select run_id, restart_of_run_id from pgflow.runs`;
  assert.deepEqual(left.map((r) => ({ ...r })), [{
    run_id: again.run_id,
    restart_of_run_id: null,
  }]);
});
