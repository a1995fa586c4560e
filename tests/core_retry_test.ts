import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, failOne, getRun, takeTasks, WORKER_ID } from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import { completeTask, failTask } from "../src/db/tasks.ts";
import { requeueStalledTasks } from "../src/db/maintenance.ts";
import type { Sql } from "../src/db/connect.ts";
import { advanceSeconds } from "./_support/clock.ts";

/** Seconds until the task's message becomes visible again. */
async function secondsHidden(sql: Sql, queue: string, msgId: number): Promise<number> {
  const [row] = await sql.unsafe(
    `select extract(epoch from vt - clock_timestamp())::float8 as s from pgmq."q_${queue}" where msg_id = $1`,
    [msgId],
  );
  return row.s;
}

dbTest(
  "failed attempts retry with delay base_delay * 2^attempts, then fail the run",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('flaky', max_attempts => 4, base_delay => 3, timeout => 30);
     select pgflow.add_step('flaky', 'call');
     select pgflow.add_step('flaky', 'after', deps_slugs => array['call']);`,
    );
    const run = await startFlow(sql, { flowSlug: "flaky", input: {} });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      const [task] = await takeTasks(sql, "flaky");
      assert.ok(task, `attempt ${attempt} gets the task`);
      const [row] = await sql`
      select attempts_count, status from pgflow.step_tasks where run_id = ${run.run_id}`;
      assert.deepEqual(row, { attempts_count: attempt, status: "started" });
      // While started, the message is hidden for the step timeout plus the margin.
      const hidden = await secondsHidden(sql, "flaky", task.msg_id);
      assert.ok(hidden > 30 && hidden <= 32, `hidden ${hidden}s during the attempt`);

      const failed = await failOne(sql, task, `boom ${attempt}`);
      if (attempt < 4) {
        assert.equal(failed.status, "queued");
        assert.equal(failed.error_message, `boom ${attempt}`);
        const delay = 3 * 2 ** attempt;
        delays.push(Math.round(await secondsHidden(sql, "flaky", task.msg_id)));
        assert.deepEqual(await takeTasks(sql, "flaky"), [], "not visible before its delay");
        // One second short of the delay the retry is still hidden; at the delay it is due.
        await advanceSeconds(sql, delay - 1);
        assert.deepEqual(
          await takeTasks(sql, "flaky"),
          [],
          `hidden ${delay - 1} s into ${delay} s`,
        );
        await advanceSeconds(sql, 1);
      } else {
        assert.equal(failed.status, "failed");
      }
    }
    assert.deepEqual(delays, [6, 12, 24], "3 * 2^1, 3 * 2^2, 3 * 2^3");

    const done = await getRun(sql, run.run_id);
    assert.equal(done.status, "failed");
    const [state] = await sql`
    select status, error_message from pgflow.step_states
    where run_id = ${run.run_id} and step_slug = 'call'`;
    assert.deepEqual(state, { status: "failed", error_message: "boom 4" });
    const [queue] = await sql`
    select (select count(*) from pgmq.q_flaky)::int as queued,
           (select count(*) from pgmq.a_flaky)::int as archived`;
    assert.deepEqual(queue, { queued: 0, archived: 1 });
  },
);

dbTest("step options override the flow's retry options", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('opts', max_attempts => 5, base_delay => 10);
     select pgflow.add_step('opts', 'once', max_attempts => 1);
     select pgflow.add_step('opts', 'fast', base_delay => 1);`,
  );
  const run = await startFlow(sql, { flowSlug: "opts", input: {} });
  const tasks = await takeTasks(sql, "opts");
  const fast = tasks.find((t) => t.step_slug === "fast")!;
  const failedFast = await failOne(sql, fast, "x");
  assert.equal(failedFast.status, "queued");
  // fast's own base_delay: 1 * 2^1 = 2 s, not the flow's 10 * 2^1 = 20 s.
  assert.equal(Math.round(await secondsHidden(sql, "opts", fast.msg_id)), 2);
  await advanceSeconds(sql, 1);
  assert.deepEqual(await takeTasks(sql, "opts"), [], "still hidden after 1 s");
  await advanceSeconds(sql, 1);
  assert.ok(await secondsHidden(sql, "opts", fast.msg_id) <= 0, "due after 2 s");

  const once = tasks.find((t) => t.step_slug === "once")!;
  assert.equal((await failOne(sql, once, "only one attempt")).status, "failed");
  assert.equal((await getRun(sql, run.run_id)).status, "failed");
  // The other step's pending retry was cancelled with the run (pgflow 0.15.1's status).
  const [fastRow] = await sql`
    select status, error_message from pgflow.step_tasks
    where run_id = ${run.run_id} and step_slug = 'fast'`;
  assert.deepEqual(fastRow, {
    status: "cancelled",
    error_message: "cancelled: run failed at step once",
  });
});

dbTest(
  "no retry on a failed run: a late failure or completion changes nothing",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('late', max_attempts => 1);
     select pgflow.add_step('late', 'a');
     select pgflow.add_step('late', 'b');`,
    );
    const run = await startFlow(sql, { flowSlug: "late", input: {} });
    const [a, b] = (await takeTasks(sql, "late")).sort((x, y) =>
      x.step_slug.localeCompare(y.step_slug)
    );
    await failOne(sql, a, "a broke");
    const before =
      await sql`select * from pgflow.step_tasks where run_id = ${run.run_id} order by step_slug`;

    const lateFail = await failOne(sql, b, "b broke later");
    assert.equal(lateFail.status, "cancelled");
    assert.equal(lateFail.error_message, "cancelled: run failed at step a");
    const lateDone = await completeTask(sql, {
      runId: run.run_id,
      stepSlug: "b",
      taskIndex: 0,
      output: 1,
    });
    assert.equal(lateDone.status, "cancelled");
    const after =
      await sql`select * from pgflow.step_tasks where run_id = ${run.run_id} order by step_slug`;
    assert.deepEqual(after, before);
    assert.equal((await getRun(sql, run.run_id)).status, "failed");
  },
);

dbTest("duplicate complete_task calls change nothing", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('dup');
     select pgflow.add_step('dup', 'a');
     select pgflow.add_step('dup', 'b', deps_slugs => array['a']);`,
  );
  const run = await startFlow(sql, { flowSlug: "dup", input: {} });
  await takeTasks(sql, "dup");
  const first = await completeTask(sql, {
    runId: run.run_id,
    stepSlug: "a",
    taskIndex: 0,
    output: 1,
  });
  const second = await completeTask(sql, {
    runId: run.run_id,
    stepSlug: "a",
    taskIndex: 0,
    output: 2,
  });
  assert.deepEqual(second, first);
  const [{ remaining_steps }] = await sql`select remaining_steps from pgflow.runs`;
  assert.equal(remaining_steps, 1, "the step was counted once");
  const [{ count }] =
    await sql`select count(*)::int as count from pgflow.step_tasks where step_slug = 'b'`;
  assert.equal(count, 1, "the dependent was started once");
});

dbTest("a step's start_delay holds its first message back", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('delayed');
     select pgflow.add_step('delayed', 'now');
     select pgflow.add_step('delayed', 'later', deps_slugs => array['now'], start_delay => 120);`,
  );
  const run = await startFlow(sql, { flowSlug: "delayed", input: {} });
  const [first] = await takeTasks(sql, "delayed");
  await completeTask(sql, { runId: run.run_id, stepSlug: "now", taskIndex: 0, output: 1 });
  assert.deepEqual(await takeTasks(sql, "delayed"), [], "later is not visible yet");
  const [task] = await sql`
    select message_id, status from pgflow.step_tasks where run_id = ${run.run_id} and step_slug = 'later'`;
  assert.equal(task.status, "queued");
  const hidden = await secondsHidden(sql, "delayed", task.message_id);
  assert.ok(hidden > 118 && hidden <= 120, `hidden ${hidden}s`);
  assert.equal(first.step_slug, "now");

  await advanceSeconds(sql, 119);
  assert.deepEqual(await takeTasks(sql, "delayed"), [], "still hidden 119 s into its 120 s delay");
  await advanceSeconds(sql, 1);
  const [later] = await takeTasks(sql, "delayed");
  assert.equal(later?.step_slug, "later", "due at its start_delay");
});

dbTest(
  "a task whose worker vanished is recovered after its step's own timeout",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('vanish', timeout => 60, base_delay => 0);
     select pgflow.add_step('vanish', 'quick', timeout => 5);
     select pgflow.add_step('vanish', 'slow', timeout => 600);`,
    );
    const run = await startFlow(sql, { flowSlug: "vanish", input: {} });
    await takeTasks(sql, "vanish");
    // A task is stalled once its step's timeout plus the 2 s margin has passed since it started.
    await advanceSeconds(sql, 6);
    assert.equal(await requeueStalledTasks(sql), 0, "6 s in: quick still has 5 + 2 s");
    // 7 s in: past quick's 5 s timeout (plus margin), well within slow's 600 s.
    await advanceSeconds(sql, 1);
    assert.equal(await requeueStalledTasks(sql), 1);
    const rows = await sql`
    select step_slug, status, attempts_count, error_message from pgflow.step_tasks
    where run_id = ${run.run_id} order by step_slug`;
    assert.equal(rows[0].step_slug, "quick");
    assert.equal(rows[0].status, "queued");
    assert.match(rows[0].error_message, new RegExp(`timed out: worker ${WORKER_ID} .* 5 s`));
    assert.equal(rows[1].status, "started", "slow is still within its own timeout");

    const [again] = await takeTasks(sql, "vanish");
    assert.equal(again.step_slug, "quick");
    const [{ attempts_count }] = await sql`
    select attempts_count from pgflow.step_tasks where step_slug = 'quick'`;
    assert.equal(attempts_count, 2);
  },
);

dbTest(
  "a message that reappears for a stalled task counts as a failed attempt",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('reappear', max_attempts => 2, base_delay => 0, timeout => 5);
     select pgflow.add_step('reappear', 'job');`,
    );
    const run = await startFlow(sql, { flowSlug: "reappear", input: {} });
    const [first] = await takeTasks(sql, "reappear", 10, WORKER_ID);
    const other = "22222222-2222-4222-8222-222222222222";
    // The message stays hidden for the 5 s timeout plus the 2 s margin.
    await advanceSeconds(sql, 6);
    assert.deepEqual(await takeTasks(sql, "reappear", 10, other), [], "hidden 6 s in");
    const [during] = await sql`select status, attempts_count from pgflow.step_tasks`;
    assert.deepEqual(during, { status: "started", attempts_count: 1 });
    await advanceSeconds(sql, 1);

    // Another worker reads the message: the stale attempt is failed and retried (delay 0).
    assert.deepEqual(await takeTasks(sql, "reappear", 10, other), []);
    const [second] = await takeTasks(sql, "reappear", 10, other);
    assert.equal(second.msg_id, first.msg_id);
    const [row] = await sql`select attempts_count, last_worker_id from pgflow.step_tasks`;
    assert.deepEqual(row, { attempts_count: 2, last_worker_id: other });

    // The second attempt stalls too: attempts are exhausted and the run fails.
    await advanceSeconds(sql, 7);
    assert.deepEqual(await takeTasks(sql, "reappear", 10, other), []);
    assert.equal((await getRun(sql, run.run_id)).status, "failed");
  },
);

dbTest(
  "a failure reported twice fails its own attempt only: fail_task_attempt leaves the next one running",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('twice', max_attempts => 3, base_delay => 0);
       select pgflow.add_step('twice', 'a');`,
    );
    const run = await startFlow(sql, { flowSlug: "twice", input: {} });
    const key = { runId: run.run_id, stepSlug: "a", taskIndex: 0 };
    await takeTasks(sql, "twice");
    // The first delivery of attempt 1's failure queues the task again; attempt 2 starts.
    let row = await failTask(sql, { ...key, attempt: 1, errorMessage: "attempt 1 failed" });
    assert.equal(row.status, "queued");
    await takeTasks(sql, "twice");
    // The same report again (its answer was lost, so the worker retried it): nothing changes.
    row = await failTask(sql, { ...key, attempt: 1, errorMessage: "attempt 1 failed" });
    assert.deepEqual([row.status, row.attempts_count], ["started", 2]);
    // Attempt 2's own failure counts.
    row = await failTask(sql, { ...key, attempt: 2, errorMessage: "attempt 2 failed" });
    assert.deepEqual([row.status, row.attempts_count, row.error_message], [
      "queued",
      2,
      "attempt 2 failed",
    ]);
    await assert.rejects(
      failTask(sql, { ...key, attempt: 0, errorMessage: "x" }),
      /fail_task_attempt: attempt must be >= 1, got 0/,
    );
    await assert.rejects(
      failTask(sql, {
        runId: run.run_id,
        stepSlug: "nope",
        taskIndex: 0,
        attempt: 1,
        errorMessage: "x",
      }),
      /fail_task_attempt\(.*flow 'twice' has no step 'nope'/,
    );
  },
);
