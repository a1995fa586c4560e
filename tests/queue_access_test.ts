/**
 * Queue access compiled per flow (sql/engine/queue_access.sql): `_queue_send`, `_queue_claim`
 * and `_queue_archive` run static SQL for a flow queue they were compiled with, and pgmq's
 * dynamic statements for any other queue. Both paths must leave the same rows; the branches
 * follow the flows as they are created and deleted, concurrently too; a role that cannot
 * replace the functions leaves them as they were.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
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

/** A queue's messages (or archive), times as offsets in whole seconds from enqueueing. */
async function rows(sql: Sql, table: string) {
  return [
    ...await sql.unsafe(`
      select msg_id, read_ct, message, headers,
             round(extract(epoch from vt - enqueued_at))::int as hidden_for
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
  assert.deepEqual(compiled.archive.map((r) => (r as { msg_id: number }).msg_id), [1, 3]);
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
  const first = db.connect(1);
  const other = db.connect(1);
  let second: Promise<unknown> | undefined;
  await first.begin(async (tx) => {
    await tx`select pgflow.create_flow('first_of_two')`;
    second = other.begin((tx2) => tx2`select pgflow.create_flow('second_of_two')`);
    // The second compilation waits for the first to commit, then reads the flows again.
    await eventually("the second compilation waits", async () => {
      const [{ n }] = await db.sql`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and not granted
          and database = (select oid from pg_database where datname = current_database())`;
      return n === 1;
    });
  });
  await second;
  for (const flow of ["first_of_two", "second_of_two"]) {
    assert.ok(await hasBranch(db.sql, "_queue_claim", flow), flow);
  }
});

dbTest(
  "a role that cannot replace the queue functions leaves them as they were",
  async ({ sql }) => {
    await sql`select pgflow.create_flow('kept')`;
    const role = `queue_access_${Date.now()}`;
    await sql.unsafe(`create role ${role} nologin`);
    try {
      await sql.unsafe(`
      grant usage on schema pgflow to ${role};
      grant select on pgflow.flows to ${role};
      grant execute on function pgflow._compile_queue_access() to ${role}`);
      await uncompiledFlow(sql, "unseen");
      // Completes (with a notice): create_flow by such a role must not fail for it.
      await sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${role}`);
        await tx`select pgflow._compile_queue_access()`;
      });
      assert.ok(await hasBranch(sql, "_queue_claim", "kept"), "the compiled branch stays");
      assert.equal(await hasBranch(sql, "_queue_claim", "unseen"), false);
      // The flow the role could not compile still works, through the dynamic statements.
      await sql`select pgflow._queue_send('unseen', array['{"b": 2}'::jsonb], 0)`;
      const claimed = await sql`select msg_id from pgflow._queue_claim('unseen', 5, '{}', '{}', 9)`;
      assert.equal(claimed.length, 1);
    } finally {
      await sql.unsafe(`drop owned by ${role}; drop role ${role}`);
    }
  },
);
