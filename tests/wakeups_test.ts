/**
 * Wake-up hints around a report that claims (sql/engine/wakeups.sql): a report whose claim takes
 * every task it made ready wakes nobody; one whose claim is full, or that does not claim, wakes
 * the flow's workers; hints for other flows and for later statements of the transaction are
 * never held back.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { listenForWakeUps } from "./_support/wakeups.ts";
import type { Sql } from "../src/db/connect.ts";
import {
  completeTaskAndClaim,
  completeTasksAndClaim,
  readAndStartTasks,
  type StartedTask,
} from "../src/db/tasks.ts";

const WORKER = crypto.randomUUID();

/** `fork`: a -> b, a -> c; `other`: the same shape on another queue. */
async function defineFlows(sql: Sql) {
  for (const flow of ["fork", "other"]) {
    await sql.unsafe(`
      select pgflow.create_flow('${flow}');
      select pgflow.add_step('${flow}', 'a');
      select pgflow.add_step('${flow}', 'b', array['a']);
      select pgflow.add_step('${flow}', 'c', array['a']);`);
  }
}

/** Starts a run of `flow` and claims its root task. */
async function claimRoot(sql: Sql, flow: string): Promise<StartedTask> {
  await sql`select pgflow.start_flow(${flow}, '{}'::jsonb)`;
  const [root] = await readAndStartTasks(sql, { flowSlug: flow, workerId: WORKER, vt: 30, qty: 1 });
  assert.equal(root.task.step_slug, "a");
  return root;
}

const report = (started: StartedTask) => ({
  runId: started.task.run_id,
  stepSlug: started.task.step_slug,
  taskIndex: started.task.task_index,
  output: 1,
});

const claim = (flow: string, qty: number) => ({ flowSlug: flow, workerId: WORKER, vt: 30, qty });

/** Visible messages of a flow's queue (claiming them). */
async function visible(sql: Sql, flow: string): Promise<number> {
  return (await readAndStartTasks(sql, claim(flow, 10))).length;
}

/** Wake-ups sent by `body`, per flow. */
async function wakeUpsDuring(
  sql: Sql,
  wakeUps: (sql: Sql) => Promise<Record<string, number>>,
  body: () => Promise<unknown>,
): Promise<Record<string, number>> {
  const before = await wakeUps(sql);
  await body();
  const after = await wakeUps(sql);
  return Object.fromEntries(Object.keys(after).map((flow) => [flow, after[flow] - before[flow]]));
}

dbTest("a report whose claim takes every task it made ready wakes no worker", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
  const batchRoot = await claimRoot(sql, "fork");
  let claimed: StartedTask[] = [];
  assert.deepEqual(
    await wakeUpsDuring(sql, wakeUps, async () => {
      ({ claimed } = await completeTasksAndClaim(sql, [report(batchRoot)], claim("fork", 10)));
    }),
    { fork: 0, other: 0 },
  );
  assert.deepEqual(claimed.map((t) => t.task.step_slug).sort(), ["b", "c"]);

  const singleRoot = await claimRoot(sql, "fork");
  assert.deepEqual(
    await wakeUpsDuring(sql, wakeUps, async () => {
      ({ claimed } = await completeTaskAndClaim(sql, {
        ...report(singleRoot),
        ...claim("fork", 3),
      }));
    }),
    { fork: 0, other: 0 },
  );
  assert.deepEqual(claimed.map((t) => t.task.step_slug).sort(), ["b", "c"]);
});

dbTest(
  "a report whose claim is full, or that does not claim, wakes the flow's workers",
  async (db) => {
    const { sql } = db;
    await defineFlows(sql);
    const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
    for (const qty of [1, 0]) {
      for (const call of ["complete_tasks_and_claim", "complete_task_and_claim"]) {
        const root = await claimRoot(sql, "fork");
        let claimed: StartedTask[] = [];
        const woken = await wakeUpsDuring(sql, wakeUps, async () => {
          ({ claimed } = call === "complete_tasks_and_claim"
            ? await completeTasksAndClaim(sql, [report(root)], claim("fork", qty))
            : await completeTaskAndClaim(sql, { ...report(root), ...claim("fork", qty) }));
        });
        assert.deepEqual(woken, { fork: 1, other: 0 }, `${call} with qty ${qty}`);
        assert.equal(claimed.length, qty);
        // What the claim left is visible: the wake-up was due.
        assert.equal(await visible(sql, "fork"), 2 - qty, `${call} with qty ${qty}`);
      }
    }
  },
);

dbTest("a claim full of messages that start no task still wakes the flow's workers", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
  const root = await claimRoot(sql, "fork");
  // A message naming no task, older than those the report sends: the claim of one takes it and
  // starts nothing, while b and c stay visible.
  await sql`select pgmq.send('fork', '{"not": "a task"}'::jsonb)`;
  let claimed: StartedTask[] = [];
  const woken = await wakeUpsDuring(sql, wakeUps, async () => {
    ({ claimed } = await completeTasksAndClaim(sql, [report(root)], claim("fork", 1)));
  });
  assert.equal(claimed.length, 0);
  assert.deepEqual(woken, { fork: 1, other: 0 });
  assert.equal(await visible(sql, "fork"), 2);
});

dbTest("a report holds back no wake-up of another flow's queue", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
  const otherRoot = await claimRoot(sql, "other");
  let claimed: StartedTask[] = [];
  // A batch may report on runs of any flow; it claims from the flow it names.
  const woken = await wakeUpsDuring(sql, wakeUps, async () => {
    ({ claimed } = await completeTasksAndClaim(sql, [report(otherRoot)], claim("fork", 10)));
  });
  assert.deepEqual(woken, { fork: 0, other: 1 });
  assert.equal(claimed.length, 0);
  assert.equal(await visible(sql, "other"), 2);
});

dbTest("the hold ends with the report, and with a report that failed", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
  const root = await claimRoot(sql, "fork");
  const reportAndClaim = (runId: string) => `
    select pgflow.complete_tasks_and_claim('fork', array['${runId}']::uuid[], array['a'],
      array[0], array['1'::jsonb], '${WORKER}'::uuid, 30, 10)`;
  const woken = await wakeUpsDuring(sql, wakeUps, () =>
    sql.begin(async (tx) => {
      // Claims b and c: no wake-up for them.
      await tx.unsafe(reportAndClaim(root.task.run_id));
      // A later start in the same transaction wakes the workers as always.
      await tx`select pgflow.start_flow('fork', '{}'::jsonb)`;
      // A report that fails inside a savepoint leaves no hold behind either.
      await assert.rejects(
        tx.savepoint((sp) => sp.unsafe(reportAndClaim(crypto.randomUUID()))),
        /does not exist/,
      );
      await tx`select pgflow.start_flow('other', '{}'::jsonb)`;
    }));
  assert.deepEqual(woken, { fork: 1, other: 1 });
});
