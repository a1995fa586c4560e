/**
 * A task's message is hidden for its step timeout + 2 s after start_tasks; if it
 * comes back (the worker vanished), the worker that reads it must count the
 * stale attempt as failed in the same statement. pgmq.read judges visibility by
 * clock_timestamp(); a statement (or transaction) that started just before the
 * deadline and reads just after it must still see the attempt as stale.
 *
 * The one test that lets real time pass (a busy wait of about a millisecond): the
 * race is between a transaction's now(), fixed when it began, and clock_timestamp(),
 * which moves on during it. Moving the engine's clock (pgflow.advance_clock) shifts
 * both by the same interval, so it brings the deadline to within a millisecond of
 * the transaction's start, but only real time passing inside the transaction can
 * put the read on the other side of it.
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
      // Move the engine's clock so that the attempt's deadline (started_at + timeout + 2 s)
      // lies 1 ms after this transaction's start, i.e. after its pgflow.now() ...
      await tx`
        select pgflow.advance_clock(
          (select started_at + interval '3 seconds' from pgflow.step_tasks
            where run_id = ${first.run_id})
          - pgflow.now() - interval '1 millisecond')`;
      const [edge] = await tx`
        select (t.started_at + interval '3 seconds' - pgflow.now())::text as deadline_in
        from pgflow.step_tasks t where t.run_id = ${first.run_id}`;
      assert.equal(edge.deadline_in, "00:00:00.001");
      // ... and before the read: wait (about a millisecond) until the message, brought
      // forward with the clock, is visible again on pgmq's clock.
      await tx`do $$ begin
                 while clock_timestamp() < (select vt from pgmq.q_stall) loop end loop;
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
