/**
 * The worker's claims commit without waiting for their WAL flush (`synchronous_commit = off`),
 * for their own transaction only: the connection, which a pool or pooler hands to reports next,
 * keeps the server's setting.
 */
import assert from "node:assert/strict";
import type { Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import { readAndStartTasks, readAndStartTasksWithPoll } from "../src/db/tasks.ts";
import { dbTest } from "./_support/db.ts";
import { define, WORKER_ID } from "./_support/drive.ts";

const claim = { flowSlug: "claims", workerId: WORKER_ID, vt: 30, qty: 5 };

async function setting(sql: { unsafe(query: string): Promise<unknown[]> }): Promise<string> {
  const [row] = await sql.unsafe("select current_setting('synchronous_commit') as value") as {
    value: string;
  }[];
  return row.value;
}

dbTest(
  "a claim commits asynchronously in its own transaction and leaves the session's setting",
  async ({ sql, connect }) => {
    await define(
      sql,
      `select pgflow.create_flow('claims'); select pgflow.add_step('claims', 's');`,
    );
    const one = connect(1);
    try {
      // The test server does not wait for flushes at all; this session does.
      await one.unsafe("set synchronous_commit = on");
      const before = await setting(one);
      assert.equal(before, "on");

      await startFlow(sql, { flowSlug: "claims", input: 1 });
      const claimed = await readAndStartTasks(one, claim);
      assert.equal(claimed.length, 1);
      assert.equal(await setting(one), before, "not left on the connection");

      await startFlow(sql, { flowSlug: "claims", input: 2 });
      const poll = readAndStartTasksWithPoll(one, {
        ...claim,
        maxPollSeconds: 1,
        pollIntervalMs: 50,
      });
      assert.equal((await poll.started).length, 1);
      assert.equal(await setting(one), before, "not left by the long poll either");

      // Inside a transaction, the setting is seen to change for that transaction alone.
      await startFlow(sql, { flowSlug: "claims", input: 3 });
      const inside = await one.begin(async (tx) => {
        // A transaction's handle runs the same queries as a pool's (its types differ).
        const started = await readAndStartTasks(tx as unknown as Sql, claim);
        return { started: started.length, setting: await setting(tx) };
      });
      assert.deepEqual(inside, { started: 1, setting: "off" });
      assert.equal(await setting(one), before);

      // What the claims wrote is there for everyone at once.
      const [{ started }] = await sql<{ started: number }[]>`
        select count(*)::int as started from pgflow.step_tasks
        where flow_slug = 'claims' and status = 'started' and attempts_count = 1`;
      assert.equal(started, 3);
    } finally {
      await one.end();
    }
  },
);
