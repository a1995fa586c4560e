/**
 * Wake-up hints around a report that claims (sql/engine/wakeups.sql): a report whose claim takes
 * every task it made ready wakes nobody; one whose claim is full, or that does not claim, wakes
 * the flow's workers; hints for other flows and for later statements of the transaction are
 * never held back.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { listenForWakeUps } from "./_support/wakeups.ts";
import { advanceClock } from "./_support/clock.ts";
import type { Sql } from "../src/db/connect.ts";
import {
  completeTaskAndClaim,
  completeTasksAndClaim,
  readAndStartTasks,
  type StartedTask,
  type TaskCompletion,
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
async function claimRoot(sql: Sql, flow: string, rootSlug = "a"): Promise<StartedTask> {
  await sql`select pgflow.start_flow(${flow}, '{}'::jsonb)`;
  const [root] = await readAndStartTasks(sql, { flowSlug: flow, workerId: WORKER, vt: 30, qty: 1 });
  assert.equal(root.task.step_slug, rootSlug);
  return root;
}

const report = (started: StartedTask): TaskCompletion => ({
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

/** A report that claims: the tasks it claimed, and the wake-ups it sent per flow. */
async function reportWatched(
  sql: Sql,
  wakeUps: (sql: Sql) => Promise<Record<string, number>>,
  call: () => Promise<{ claimed: StartedTask[] }>,
): Promise<{ claimed: StartedTask[]; woken: Record<string, number> }> {
  let claimed: StartedTask[] = [];
  const woken = await wakeUpsDuring(sql, wakeUps, async () => {
    ({ claimed } = await call());
  });
  return { claimed, woken };
}

dbTest("a report whose claim takes every task it made ready wakes no worker", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
  const batchRoot = await claimRoot(sql, "fork");
  const batch = await reportWatched(
    sql,
    wakeUps,
    () => completeTasksAndClaim(sql, [report(batchRoot)], claim("fork", 10)),
  );
  assert.deepEqual(batch.woken, { fork: 0, other: 0 });
  assert.deepEqual(batch.claimed.map((t) => t.task.step_slug).sort(), ["b", "c"]);

  const singleRoot = await claimRoot(sql, "fork");
  const single = await reportWatched(
    sql,
    wakeUps,
    () => completeTaskAndClaim(sql, { ...report(singleRoot), ...claim("fork", 3) }),
  );
  assert.deepEqual(single.woken, { fork: 0, other: 0 });
  assert.deepEqual(single.claimed.map((t) => t.task.step_slug).sort(), ["b", "c"]);
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
        const { claimed, woken } = await reportWatched(
          sql,
          wakeUps,
          (): Promise<{ claimed: StartedTask[] }> =>
            call === "complete_tasks_and_claim"
              ? completeTasksAndClaim(sql, [report(root)], claim("fork", qty))
              : completeTaskAndClaim(sql, { ...report(root), ...claim("fork", qty) }),
        );
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
  const { claimed, woken } = await reportWatched(
    sql,
    wakeUps,
    () => completeTasksAndClaim(sql, [report(root)], claim("fork", 1)),
  );
  assert.equal(claimed.length, 0);
  assert.deepEqual(woken, { fork: 1, other: 0 });
  assert.equal(await visible(sql, "fork"), 2);
});

dbTest("a report holds back no wake-up of another flow's queue", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
  const otherRoot = await claimRoot(sql, "other");
  // A batch may report on runs of any flow; it claims from the flow it names.
  const { claimed, woken } = await reportWatched(
    sql,
    wakeUps,
    () => completeTasksAndClaim(sql, [report(otherRoot)], claim("fork", 10)),
  );
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

dbTest("a step that the claim's own start of tasks makes ready wakes the workers", async (db) => {
  const { sql } = db;
  // x gives up after one attempt and is skipped, which readies y; r is reported meanwhile.
  await sql.unsafe(`
    select pgflow.create_flow('stall');
    select pgflow.add_step('stall', 'x', max_attempts => 1, timeout => 1, when_exhausted => 'skip');
    select pgflow.add_step('stall', 'y', array['x']);
    select pgflow.add_step('stall', 'r');`);
  const wakeUps = await listenForWakeUps(db.connect(1), ["stall"]);
  await sql`select pgflow.start_flow('stall', '{}'::jsonb)`;
  const started = await readAndStartTasks(sql, claim("stall", 10));
  const r = started.find((t) => t.task.step_slug === "r")!;
  // x's worker vanished: its message comes back, and the next claim fails x for good.
  await advanceClock(sql, "1 hour");
  const { claimed, woken } = await reportWatched(
    sql,
    wakeUps,
    () => completeTaskAndClaim(sql, { ...report(r), ...claim("stall", 10) }),
  );
  assert.equal(claimed.length, 0);
  const [x] = await sql`select status, skip_reason from pgflow.step_states where step_slug = 'x'`;
  assert.deepEqual({ ...x }, { status: "skipped", skip_reason: "handler_failed" });
  // y was readied after the claim read: it is visible, so its wake-up went out.
  assert.deepEqual(woken, { stall: 1 });
  assert.equal(await visible(sql, "stall"), 1);
});

dbTest("a map's report wakes the workers only when its claim may have left tasks", async (db) => {
  const { sql } = db;
  await sql.unsafe(`
    select pgflow.create_flow('wide');
    select pgflow.add_step('wide', 'list');
    select pgflow.add_step('wide', 'each', array['list'], step_type => 'map');`);
  const wakeUps = await listenForWakeUps(db.connect(1), ["wide"]);
  for (const [qty, wakes, left] of [[3, 1, 2], [5, 1, 0], [6, 0, 0]]) {
    const list = await claimRoot(sql, "wide", "list");
    const { claimed, woken } = await reportWatched(sql, wakeUps, () =>
      completeTasksAndClaim(
        sql,
        [{ ...report(list), output: [1, 2, 3, 4, 5] }],
        claim("wide", qty),
      ));
    assert.equal(claimed.length, Math.min(qty, 5), `qty ${qty}`);
    assert.deepEqual(woken, { wide: wakes }, `qty ${qty}`);
    assert.equal(await visible(sql, "wide"), left, `qty ${qty}`);
  }
});

dbTest(
  "a hold set for a whole session, or a held list set by hand, changes no start",
  async (db) => {
    const { sql } = db;
    await defineFlows(sql);
    const wakeUps = await listenForWakeUps(db.connect(1), ["fork", "other"]);
    const session = db.connect(1);
    // As a transaction pooler would hand this server connection to the next client.
    await session`set edgeflow.hold_wakeups = 'on'`;
    await session`set edgeflow.held_wakeups = '{not an array'`;
    const woken = await wakeUpsDuring(sql, wakeUps, async () => {
      await session`select pgflow.start_flow('fork', '{}'::jsonb)`;
      await session`select pgflow.start_flow('fork', '{}'::jsonb)`;
    });
    assert.deepEqual(woken, { fork: 2, other: 0 });
  },
);

dbTest("the wake-up functions are not executable by PUBLIC", async (db) => {
  const rows = await db.sql`
    select p.oid::regprocedure::text as fn, has_function_privilege('public', p.oid, 'execute') as can
    from pg_proc p
    where p.pronamespace = 'pgflow'::regnamespace
      and p.proname in ('_wakeup_hold_key', '_wakeups_held', '_announce_ready', '_hold_wakeups',
                        '_note_claim', '_release_wakeups')
    order by 1`;
  assert.equal(rows.length, 6);
  assert.deepEqual(rows.filter((r) => r.can).map((r) => r.fn), []);
});
