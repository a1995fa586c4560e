/**
 * A claim that reads a message committed while it was already under way must still hand the
 * started task back. A statement sees the rows committed when it began, while pgmq.read (a
 * function) reads with a newer snapshot: joined in one statement, such a message was claimed
 * and its task started, yet the statement could not see the task, so the worker never ran it
 * and the run waited for the step timeout (found by the no-LISTEN latency benchmark).
 *
 * The test makes the interleaving certain: a transaction that starts a run holds the queue
 * table locked, so the claim blocks inside pgmq.read, after it began; then that transaction
 * commits.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { someoneWaitsForALock } from "./_support/locks.ts";
import { define, WORKER_ID } from "./_support/drive.ts";
import type { Sql } from "../src/db/connect.ts";
import {
  completeTask,
  completeTaskAndClaim,
  readAndStartTasks,
  type StartedTask,
} from "../src/db/tasks.ts";

/**
 * Runs `claim` while another transaction, holding `pgmq.q_<flow>` locked, starts a run; commits
 * that transaction once the claim waits for the lock. Resolves with what the claim returned
 * and the new run's id.
 */
async function claimDuringCommit(
  db: { connect(max?: number): Sql; sql: Sql },
  flow: string,
  claim: (sql: Sql) => Promise<StartedTask[]>,
): Promise<{ claimed: StartedTask[]; runId: string }> {
  const writer = db.connect(1);
  const claimer = db.connect(1);
  try {
    let release!: () => void;
    const held = new Promise<void>((resolve) => release = resolve);
    let started!: (runId: string) => void;
    const runStarted = new Promise<string>((resolve) => started = resolve);
    const transaction = writer.begin(async (tx) => {
      await tx.unsafe(`lock table pgmq.q_${flow} in access exclusive mode`);
      const [run] = await tx`select run_id from pgflow.start_flow(${flow}, '{}'::jsonb)`;
      started(run.run_id);
      await held;
    });
    const runId = await runStarted;
    const claiming = claim(claimer);
    await someoneWaitsForALock(db.sql);
    release();
    await transaction;
    return { claimed: await claiming, runId };
  } finally {
    await Promise.all([writer.end(), claimer.end()]);
  }
}

dbTest(
  "read_and_start_tasks hands back a task whose message was committed while it read",
  async (db) => {
    await define(db.sql, `select pgflow.create_flow('race'); select pgflow.add_step('race', 'a');`);
    const { claimed, runId } = await claimDuringCommit(
      db,
      "race",
      (sql) => readAndStartTasks(sql, { flowSlug: "race", workerId: WORKER_ID, vt: 30, qty: 5 }),
    );
    const [task] = await db.sql`
      select status from pgflow.step_tasks where run_id = ${runId} and step_slug = 'a'`;
    assert.equal(task.status, "started");
    assert.deepEqual(
      claimed.map((c) => [c.task.run_id, c.task.step_slug, c.attempt]),
      [[runId, "a", 1]],
      "the started task is handed back",
    );
  },
);

dbTest(
  "complete_task_and_claim hands back a task of another run committed while it claimed",
  async (db) => {
    await define(db.sql, `select pgflow.create_flow('race'); select pgflow.add_step('race', 'a');`);
    await db.sql`select pgflow.start_flow('race', '{}'::jsonb)`;
    const [first] = await readAndStartTasks(db.sql, {
      flowSlug: "race",
      workerId: WORKER_ID,
      vt: 30,
      qty: 1,
    });
    const { claimed, runId } = await claimDuringCommit(db, "race", async (sql) => {
      const outcome = await completeTaskAndClaim(sql, {
        runId: first.task.run_id,
        stepSlug: "a",
        taskIndex: 0,
        output: 1,
        workerId: WORKER_ID,
        vt: 30,
        qty: 5,
      });
      assert.equal(outcome.result.status, "completed");
      return outcome.claimed;
    });
    assert.deepEqual(claimed.map((c) => [c.task.run_id, c.attempt]), [[runId, 1]]);
    // The claimed task is really this worker's to finish.
    assert.equal(
      (await completeTask(db.sql, { runId, stepSlug: "a", taskIndex: 0, output: 2 })).status,
      "completed",
    );
  },
);

dbTest("read_and_start_tasks names a bad argument", async ({ sql }) => {
  await define(sql, `select pgflow.create_flow('race'); select pgflow.add_step('race', 'a');`);
  const call = (flow: string, vt: number, qty: number | null, worker: string | null) =>
    sql`select * from pgflow.read_and_start_tasks(${flow}, ${vt}::int, ${qty}::int, ${worker}::uuid)`;
  await assert.rejects(call("race", 30, -1, WORKER_ID), /qty must be >= 0 and vt >= 1, got qty -1/);
  await assert.rejects(call("race", 0, 1, WORKER_ID), /got qty 1, vt 0/);
  await assert.rejects(call("race", 30, 1, null), /worker_id must not be NULL/);
  await assert.rejects(call("nope", 30, 1, WORKER_ID), /flow 'nope' does not exist/);
  assert.equal((await call("race", 30, 0, WORKER_ID)).length, 0);
});
