/**
 * `listen: "auto"` decides from evidence whether notifications arrive: behind a real
 * transaction-mode pooler (pgbouncer, started here in front of the test server) it long-polls,
 * on a direct connection it LISTENs, whatever the port. Explicit `listen` settings win.
 */
import assert from "node:assert/strict";
import { connect } from "../src/db/connect.ts";
import { literal, oneTrip } from "../src/db/one_trip.ts";
import { startFlow } from "../src/db/runs.ts";
import { Flow } from "../src/dsl/mod.ts";
import type { LogRecord } from "../src/worker/logger.ts";
import { findPgbouncer, type Pgbouncer, startPgbouncer } from "./_support/pgbouncer.ts";
import { waitForRun, workerTest, type WorkerTestContext } from "./_support/worker.ts";

const pgbouncer = findPgbouncer();
if (!pgbouncer) {
  console.warn(
    "worker_pooler_test: skipped: pgbouncer is not installed (apt-get install -y pgbouncer)",
  );
}

const flow = new Flow<{ n: number }>({ slug: "pooled" })
  .step({ slug: "double" }, ({ run }) => run.n * 2)
  .step({ slug: "plus_one", dependsOn: ["double"] }, ({ double }) => double + 1);

/** The startup line that says how the idle worker waits, and why. */
function idleDecision(logs: LogRecord[]): { msg: string; why: string } {
  const line = logs.find((r) =>
    r.msg === "LISTENing for wake-ups" || r.msg.startsWith("long-polling")
  );
  assert.ok(line, "the worker logs how it waits when idle");
  return { msg: line.msg, why: String(line.fields.why) };
}

/** Runs `fn` with a pgbouncer in front of the test's database. */
function pooledTest(name: string, fn: (t: WorkerTestContext, bouncer: Pgbouncer) => Promise<void>) {
  if (!pgbouncer) {
    Deno.test({ name, ignore: true, fn: () => {} });
    return;
  }
  workerTest(name, async (t) => {
    const bouncer = await startPgbouncer(pgbouncer, t.url);
    try {
      await fn(t, bouncer);
    } finally {
      await bouncer.stop();
    }
  });
}

pooledTest(
  "behind pgbouncer (transaction mode) auto long-polls and completes runs",
  async (t, bouncer) => {
    const { worker, logs } = await t.run(flow, { connectionString: bouncer.urlFor(t.url) });
    const decision = idleDecision(logs);
    assert.equal(decision.msg, "long-polling: no LISTEN");
    assert.match(decision.why, /test notification did not arrive within \d+ ms/);

    const runs = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => startFlow(t.sql, { flowSlug: "pooled", input: { n } })),
    );
    for (const [index, run] of runs.entries()) {
      const done = await waitForRun(t.sql, run.run_id);
      assert.deepEqual(done.output, { plus_one: (index + 1) * 2 + 1 });
    }
    assert.ok(worker.pollStats.longPolls > 0, "it waited with long polls");
    await worker.stop(); // while its pooler still runs
  },
);

workerTest("on a direct connection auto LISTENs", async (t) => {
  const { logs } = await t.run(flow);
  const decision = idleDecision(logs);
  assert.equal(decision.msg, "LISTENing for wake-ups");
  assert.match(decision.why, /test notification arrived after \d+ ms/);
});

pooledTest("explicit listen settings win over the test", async (t, bouncer) => {
  const through = await t.run(flow, { connectionString: bouncer.urlFor(t.url), listen: true });
  assert.deepEqual(idleDecision(through.logs), {
    msg: "LISTENing for wake-ups",
    why: "option listen: true",
  });
  const direct = await t.run(flow, { listen: false });
  assert.deepEqual(idleDecision(direct.logs), {
    msg: "long-polling: no LISTEN",
    why: "option listen: false",
  });
  await through.worker.stop(); // while its pooler still runs
});

// A one-trip statement goes by the simple protocol, which postgres.js would pipeline other
// statements behind on the same connection. Through a transaction pooler, a statement with
// parameters queued that way (it asks for its parameter types before it is bound) straddled
// two transactions, and its answer never came. Pools from connect() never pipeline.
pooledTest(
  "statements queued behind one-trip statements go through the pooler",
  async (t, bouncer) => {
    const sql = connect(bouncer.urlFor(t.url), { max: 2 });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("statements hung behind the pooler")), 30_000);
    });
    try {
      const mixed = async (round: number) => {
        const [simple, [param]] = await Promise.all([
          oneTrip(sql)<{ n: number }[]>`select ${literal.int(round)} as n`,
          sql<{ n: number }[]>`select ${round}::int + 1 as n`,
        ]);
        return simple[0].n + param.n;
      };
      const sums = await Promise.race([
        Promise.all(Array.from({ length: 300 }, (_, round) => mixed(round))),
        hung,
      ]);
      assert.deepEqual(sums, Array.from({ length: 300 }, (_, round) => 2 * round + 1));
    } finally {
      clearTimeout(timer);
      await sql.end({ timeout: 1 });
    }
  },
);
