/**
 * Queue access compiled per flow (sql/engine/queue_access.sql): `_queue_send`, `_queue_claim`
 * and `_queue_archive` run static SQL for a flow queue they were compiled with, and pgmq's
 * dynamic statements for any other queue. Both paths must leave the same rows; the branches
 * follow the flows as they are created and deleted, concurrently too; a role that cannot
 * replace the functions leaves them as they were.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { dbTest, type TestDb } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import type { Sql } from "../src/db/connect.ts";

/** Whether `fn`'s compiled body has a branch for `queue`. */
async function hasBranch(sql: Sql, fn: string, queue: string): Promise<boolean> {
  const [row] = await sql`
    select position(${`if p_queue = '${queue}' then`} in pg_get_functiondef(${
    "pgflow." + fn
  }::regproc)) > 0 as found`;
  return row.found as boolean;
}

/** A flow whose queue exists but that no compilation has seen (as if created before it). */
async function uncompiledFlow(sql: Sql, slug: string) {
  await sql.begin(async (tx) => {
    await tx`insert into pgflow.flows (flow_slug) values (${slug})`;
    await tx`select pgmq.create(${slug})`;
  });
}

/**
 * A queue's messages (or archive): whole seconds each stays hidden from now (0 once visible),
 * and whether its times are in order.
 */
async function rows(sql: Sql, table: string) {
  const archived = table.startsWith("a_") ? "archived_at between enqueued_at and now()" : "true";
  return [
    ...await sql.unsafe(`
      select msg_id, read_ct, message, headers,
             greatest(0, round(extract(epoch from vt - clock_timestamp())))::int as hidden_for,
             enqueued_at <= clock_timestamp() and ${archived} as times_in_order
      from pgmq.${table} order by msg_id`),
  ];
}

dbTest("compiled and dynamic queue statements leave the same rows", async ({ sql }) => {
  await sql`select pgflow.create_flow('compiled')`;
  await uncompiledFlow(sql, "plain");
  assert.ok(await hasBranch(sql, "_queue_claim", "compiled"));
  for (const fn of ["_queue_claim", "_queue_archive", "_queue_send"]) {
    assert.equal(await hasBranch(sql, fn, "plain"), false, `${fn} has no branch for plain`);
  }

  const results: Record<string, unknown> = {};
  for (const queue of ["compiled", "plain"]) {
    const messages = [1, 2, 3, 4].map((n) => ({ step_slug: n % 2 ? "odd" : "even", n }));
    const sent = await sql`
      select pgflow._queue_send(${queue},
        array(select e from jsonb_array_elements(${sql.json(messages)}) e), 0) as msg_id`;
    const delayed = await sql`
      select pgflow._queue_send(${queue}, array['{"step_slug": "odd", "late": true}'::jsonb], 30)
        as msg_id`;
    // Claims two: `odd` hides for 40 s, any other step for the default 7 s.
    const claimed = await sql`
      select msg_id, read_ct, message, headers,
             round(extract(epoch from vt - clock_timestamp()))::int as hidden_for
      from pgflow._queue_claim(${queue}, 2, '{odd}', '{40}', 7)`;
    await sql`select pgflow._queue_archive(${queue}, array[1, 3, 99]::bigint[])`;
    results[queue] = {
      sent: sent.map((r) => r.msg_id),
      delayed: delayed.map((r) => r.msg_id),
      claimed: [...claimed],
      queue: await rows(sql, `q_${queue}`),
      archive: await rows(sql, `a_${queue}`),
    };
  }
  assert.deepEqual(results.compiled, results.plain);
  // The comparison means something only if each statement did its work.
  const compiled = results.compiled as Record<string, unknown[]>;
  assert.deepEqual(compiled.sent, [1, 2, 3, 4]);
  assert.deepEqual(compiled.claimed.map((r) => (r as { hidden_for: number }).hidden_for), [40, 7]);
  assert.deepEqual(
    compiled.archive.map((
      r,
    ) => [(r as { msg_id: number }).msg_id, (r as { hidden_for: number }).hidden_for]),
    [[1, 40], [3, 0]],
  );
  assert.deepEqual(compiled.queue.map((r) => (r as { hidden_for: number }).hidden_for), [7, 0, 30]);
});

dbTest(
  "create_flow and delete_flow_and_data compile a flow's branches in and out",
  async ({ sql }) => {
    await sql`select pgflow.create_flow('comes_and_goes')`;
    await sql`select pgflow.add_step('comes_and_goes', 'only')`;
    for (const fn of ["_queue_claim", "_queue_archive", "_queue_send"]) {
      assert.ok(await hasBranch(sql, fn, "comes_and_goes"), `${fn} after create_flow`);
    }
    await sql`select pgflow.delete_flow_and_data('comes_and_goes')`;
    for (const fn of ["_queue_claim", "_queue_archive", "_queue_send"]) {
      assert.equal(await hasBranch(sql, fn, "comes_and_goes"), false, `${fn} after delete`);
    }
    // A flow created anew gets its branch back, and its messages reach the new queue.
    await sql`select pgflow.create_flow('comes_and_goes')`;
    await sql`select pgflow._queue_send('comes_and_goes', array['{"a": 1}'::jsonb], 0)`;
    const [{ n }] = await sql`select count(*)::int as n from pgmq.q_comes_and_goes`;
    assert.equal(n, 1);
  },
);

dbTest("flows created at once in two transactions both get their branches", async (db) => {
  // The second creator waits for the first to commit, then reads the flows again.
  await createWhileAnotherWaits(db, ["first_of_two"], "second_of_two");
  for (const flow of ["first_of_two", "second_of_two"]) {
    assert.ok(await hasBranch(db.sql, "_queue_claim", flow), flow);
  }
});

dbTest(
  "a transaction creating two flows does not deadlock with another creating one",
  async (db) => {
    // The other creator waits before writing anything, so the first can create its flow too.
    await createWhileAnotherWaits(db, ["x_flow", "z_flow"], "z_flow");
    for (const flow of ["x_flow", "z_flow"]) {
      assert.ok(await hasBranch(db.sql, "_queue_claim", flow), flow);
    }
  },
);

/**
 * One transaction creates `flows[0]`; another then creates `other` and is seen waiting for a
 * lock; the first creates the rest of `flows` and commits; the other finishes.
 */
async function createWhileAnotherWaits(db: TestDb, flows: string[], other: string) {
  const first = db.connect(1);
  const second = db.connect(1);
  const secondWaits = await waitsForLock(db.sql, second);
  let secondDone: Promise<unknown> | undefined;
  await first.begin(async (tx) => {
    await tx`select pgflow.create_flow(${flows[0]})`;
    secondDone = second.begin((tx2) => tx2`select pgflow.create_flow(${other})`);
    await eventually("the second creator waits", secondWaits);
    for (const flow of flows.slice(1)) await tx`select pgflow.create_flow(${flow})`;
  });
  await secondDone;
}

/** Whether the backend of `pool` (one connection) is waiting for a lock. */
async function waitsForLock(sql: Sql, pool: Sql): Promise<() => Promise<boolean>> {
  const [{ pid }] = await pool`select pg_backend_pid() as pid`;
  return async () => {
    const [row] = await sql`select wait_event_type from pg_stat_activity where pid = ${pid}`;
    return row?.wait_event_type === "Lock";
  };
}

dbTest(
  "a role that cannot replace the queue functions leaves them as they were",
  async (db) => {
    const { sql } = db;
    await sql`select pgflow.create_flow('kept')`;
    await uncompiledFlow(sql, "unseen");
    // Each role may take the lock and look at the queues, so that it gets as far as replacing
    // the functions: refused for want of CREATE on the schema, or, with it, of ownership.
    const cases: [string, RegExp][] = [
      ["", /\(permission denied for schema pgflow\)/],
      ["grant create on schema pgflow to {role};", /\(must be owner of function _queue_claim\)/],
    ];
    for (const [extraGrant, reason] of cases) {
      const role = `queue_access_${crypto.randomUUID().slice(0, 8)}`;
      await sql.unsafe(`create role ${role} nologin`);
      try {
        await sql.unsafe(`
          grant usage on schema pgflow, pgmq to ${role};
          grant select, update on pgflow.flows to ${role};
          grant execute on function pgflow._compile_queue_access(),
            pgflow._lock_flow_definitions() to ${role};
          ${extraGrant.replace("{role}", role)}`);
        // Completes, saying why: create_flow by such a role must not fail for it.
        const notices: string[] = [];
        const session = postgres(db.url, { max: 1, onnotice: (n) => notices.push(n.message) });
        try {
          await session.begin(async (tx) => {
            await tx.unsafe(`set local role ${role}`);
            await tx`select pgflow._compile_queue_access()`;
          });
        } finally {
          await session.end();
        }
        assert.equal(notices.length, 1, role);
        assert.match(notices[0], /^pgflow: queue access not compiled /);
        assert.match(notices[0], reason);
        assert.ok(await hasBranch(sql, "_queue_claim", "kept"), "the compiled branch stays");
        assert.equal(await hasBranch(sql, "_queue_claim", "unseen"), false);
      } finally {
        await sql.unsafe(`drop owned by ${role}; drop role ${role}`);
      }
    }
    // The flow no one compiled still works, through the dynamic statements.
    await sql`select pgflow._queue_send('unseen', array['{"b": 2}'::jsonb], 0)`;
    const claimed = await sql`select msg_id from pgflow._queue_claim('unseen', 5, '{}', '{}', 9)`;
    assert.equal(claimed.length, 1);
  },
);
