/** createWorker(handler, { queueName }): a plain pgmq queue worker. */
import assert from "node:assert/strict";
import type { QueueContext } from "../src/worker/context.ts";
import { eventually } from "./_support/eventually.ts";
import { workerTest } from "./_support/worker.ts";

interface Job {
  n: number;
}

workerTest("a queue worker handles each message once and archives it on success", async (t) => {
  const seen: number[] = [];
  const { first, worker } = await t.startQueue<Job>((payload, context: QueueContext<Job>) => {
    assert.equal(context.rawMessage.message.n, payload.n);
    assert.equal(context.rawMessage.read_ct, 1);
    seen.push(payload.n);
  }, { queueName: "jobs", maxConcurrent: 3 });
  assert.deepEqual([first.state, first.queue, first.flow], ["starting", "jobs", undefined]);
  await worker.start();
  // The worker created the queue; send after it is running.
  await t
    .sql`select pgmq.send_batch('jobs', array(select jsonb_build_object('n', i) from generate_series(1, 12) i))`;
  await eventually("12 archived messages", async () => {
    const [{ count }] = await t.sql`select count(*)::int as count from pgmq.a_jobs`;
    return count === 12;
  });
  const [{ left }] = await t.sql`select count(*)::int as left from pgmq.q_jobs`;
  assert.equal(left, 0);
  assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => i + 1));
  assert.equal(worker.status().tasksCompleted, 12);
  const [registered] = await t
    .sql`select queue_name from pgflow.workers where worker_id = ${worker.workerId}`;
  assert.equal(registered.queue_name, "jobs");
});

workerTest("a failing message is retried by the policy, then archived and logged", async (t) => {
  const attempts = new Map<number, number[]>();
  const { worker, logs } = await t.startQueue<Job>((payload, context) => {
    attempts.set(payload.n, [...(attempts.get(payload.n) ?? []), context.rawMessage.read_ct]);
    if (payload.n === 2 && context.rawMessage.read_ct === 2) return "recovered";
    throw new Error(`job ${payload.n} failed`);
  }, { queueName: "flaky_jobs", retry: { strategy: "fixed", limit: 2, baseDelay: 0 } });
  await worker.start();
  await t.sql`select pgmq.send_batch('flaky_jobs', array['{"n":1}'::jsonb, '{"n":2}'::jsonb])`;
  await eventually("both messages archived", async () => {
    const [{ count }] = await t.sql`select count(*)::int as count from pgmq.a_flaky_jobs`;
    return count === 2;
  });
  // n=1: the first attempt and 2 retries, then archived; n=2 succeeded on its first retry.
  assert.deepEqual(attempts.get(1), [1, 2, 3]);
  assert.deepEqual(attempts.get(2), [1, 2]);
  const exhausted = logs.filter((record) => record.level === "error");
  assert.equal(exhausted.length, 1);
  assert.equal(exhausted[0].msg, "message failed and has no retries left; archived");
  assert.match(String(exhausted[0].fields.error), /job 1 failed/);
  assert.equal(logs.filter((record) => record.msg === "message failed; will be retried").length, 3);
});

workerTest("a queue retry waits for its delay (pgmq visibility)", async (t) => {
  const times: number[] = [];
  const { worker } = await t.startQueue<Job>(() => {
    times.push(Date.now());
    throw new Error("not yet");
  }, {
    queueName: "delayed",
    retry: { strategy: "exponential", limit: 1, baseDelay: 1, maxDelay: 10 },
  });
  await worker.start();
  await t.sql`select pgmq.send('delayed', '{"n":1}'::jsonb)`;
  await eventually("the message archived after its retry", async () => {
    const [{ count }] = await t.sql`select count(*)::int as count from pgmq.a_delayed`;
    return count === 1;
  }, 5_000);
  assert.equal(times.length, 2);
  assert.ok(times[1] - times[0] >= 900, `retried after ${times[1] - times[0]} ms`);
});
