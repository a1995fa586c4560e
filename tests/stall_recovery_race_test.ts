/**
 * A task's message is hidden for its step timeout + 2 s after start_tasks; if it
 * comes back (the worker vanished), the worker that reads it must count the
 * stale attempt as failed in the same statement. pgmq.read judges visibility by
 * clock_timestamp(); a statement (or transaction) that started just before the
 * deadline and reads just after it must still see the attempt as stale.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, takeTasks, WORKER_ID } from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";

dbTest(
  "a stalled message read after its deadline, in a transaction begun before it, fails the stale attempt",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('stall', timeout => 1, base_delay => 0);
       select pgflow.add_step('stall', 'a');`,
    );
    await startFlow(sql, { flowSlug: "stall", input: {} });
    const [first] = await takeTasks(sql, "stall");

    const after = await sql.begin(async (tx) => {
      // The attempt's deadline (started_at + timeout + 2 s, the message's vt) lies 1 ms after
      // this transaction's start, i.e. after now() ...
      await tx`
        update pgflow.step_tasks
           set started_at = now() - interval '3 seconds' + interval '1 millisecond'
         where run_id = ${first.run_id}`;
      await tx`update pgmq.q_stall set vt = now() + interval '1 millisecond'
               where msg_id = ${first.msg_id}`;
      // ... and before the read: wait (at most 1 ms) until the clock is past it.
      await tx`do $$ begin
                 while clock_timestamp() <= now() + interval '1 millisecond' loop end loop;
               end $$`;
      const read = await tx`select msg_id from pgmq.read('stall', 30, 10)`;
      assert.deepEqual(read.map((m) => m.msg_id), [first.msg_id], "the message came back");
      const started = await tx`
        select * from pgflow.start_tasks('stall', array[${first.msg_id}]::bigint[], ${WORKER_ID}::uuid)`;
      assert.equal(started.length, 0, "the stale attempt is not handed out as running");
      const [task] = await tx`
        select t.status, t.attempts_count, t.error_message, q.vt <= clock_timestamp() as visible
        from pgflow.step_tasks t join pgmq.q_stall q on q.msg_id = t.message_id
        where t.run_id = ${first.run_id}`;
      return task;
    });
    assert.equal(after.status, "queued", "the stale attempt counted as failed and was requeued");
    assert.equal(after.attempts_count, 1);
    assert.match(after.error_message, /^timed out: worker .* step timeout of 1 s$/);
    assert.equal(after.visible, true, "retried after base_delay 0, not hidden for the read's 30 s");

    const [second] = await takeTasks(sql, "stall");
    assert.equal(second.msg_id, first.msg_id);
    const [{ attempts_count }] = await sql`
      select attempts_count from pgflow.step_tasks where run_id = ${first.run_id}`;
    assert.equal(attempts_count, 2, "the retry starts at once");
  },
);
