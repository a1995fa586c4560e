/** Startup: connection lookup, the flow definition check, registration. */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import { Flow } from "../src/dsl/mod.ts";
import { createWorker } from "../src/worker/create_worker.ts";
import { FlowMismatchError } from "../src/worker/errors.ts";
import { waitForRun, workerTest } from "./_support/worker.ts";

const v1 = new Flow<{ n: number }>({ slug: "versioned" })
  .step({ slug: "first" }, ({ run }) => run.n + 1)
  .step({ slug: "second", dependsOn: ["first"] }, ({ first }) => first * 10);

const v2 = new Flow<{ n: number }>({ slug: "versioned", maxAttempts: 5 })
  .step({ slug: "first" }, ({ run }) => run.n + 2)
  .step({ slug: "other", dependsOn: ["first"], timeout: 7 }, ({ first }) => first * 100);

workerTest(
  "a flow definition that differs from the database refuses to start and lists why",
  async (t) => {
    const one = await t.run(v1);
    const old = await startFlow(t.sql, { flowSlug: "versioned", input: { n: 1 } });
    assert.deepEqual((await waitForRun(t.sql, old.run_id)).output, { second: 20 });
    await one.worker.stop();

    const two = await t.start(v2);
    await assert.rejects(two.worker.start(), (error: unknown) => {
      assert.ok(error instanceof FlowMismatchError);
      assert.equal(error.flowSlug, "versioned");
      // Structure only: the renamed step; options (maxAttempts, timeout) are not compared.
      assert.deepEqual(error.differences, [
        "step at index 1: code has slug 'other', database has 'second'",
      ]);
      assert.match(error.message, /flow "versioned" in the database differs from the code/);
      assert.match(error.message, /other/);
      assert.match(error.message, /recreateOnMismatch/);
      return true;
    });
    const response = await two.serve(new Request("http://localhost/"));
    assert.equal(response.status, 500);
    const status = await response.json();
    assert.equal(status.state, "stopped");
    assert.match(status.error, /differs from the code/);
    assert.ok(
      two.logs.some((record) =>
        record.level === "error" && record.msg === "worker failed to start"
      ),
    );
    // Nothing was changed or registered.
    const [{ count }] = await t
      .sql`select count(*)::int as count from pgflow.steps where flow_slug = 'versioned'`;
    assert.equal(count, 2);
    const [registered] = await t
      .sql`select 1 from pgflow.workers where worker_id = ${two.worker.workerId}`;
    assert.equal(registered, undefined);
  },
);

workerTest(
  "recreateOnMismatch deletes the old flow with its runs and runs the new one",
  async (t) => {
    const one = await t.run(v1);
    const old = await startFlow(t.sql, { flowSlug: "versioned", input: { n: 1 } });
    await waitForRun(t.sql, old.run_id);
    await one.worker.stop();

    const two = await t.run(v2, { recreateOnMismatch: true });
    assert.ok(two.logs.some((record) => record.level === "warn" && /recreated/.test(record.msg)));
    const [gone] = await t.sql`select 1 from pgflow.runs where run_id = ${old.run_id}`;
    assert.equal(gone, undefined);
    const run = await startFlow(t.sql, { flowSlug: "versioned", input: { n: 1 } });
    assert.deepEqual((await waitForRun(t.sql, run.run_id)).output, { other: 300 });
  },
);

workerTest(
  "the connection comes from EDGE_WORKER_DB_URL before SUPABASE_DB_URL and DATABASE_URL",
  async (t) => {
    const bogus = "postgres://nobody:wrong@127.0.0.1:1/nothing";
    const { worker } = await t.start(v1, {
      connectionString: undefined,
      env: { EDGE_WORKER_DB_URL: t.url, SUPABASE_DB_URL: bogus, DATABASE_URL: bogus },
    });
    await worker.start();
    const run = await startFlow(t.sql, { flowSlug: "versioned", input: { n: 4 } });
    assert.deepEqual((await waitForRun(t.sql, run.run_id)).output, { second: 50 });
  },
);

workerTest(
  "no connection configured: the start fails and names the ways to give one",
  async (t) => {
    const serve = createWorker(v1, {
      env: { EDGE_WORKER_DB_URL: undefined, SUPABASE_DB_URL: undefined, DATABASE_URL: undefined },
      logLevel: "error",
      logSink: () => {},
    });
    const response = await serve(new Request("http://localhost/"));
    const expected =
      /no database to connect to: give the option sql or connectionString, or set one of the environment variables EDGE_WORKER_DB_URL, SUPABASE_DB_URL, DATABASE_URL/;
    await assert.rejects(serve.worker.start(), expected);
    assert.equal(response.status, 500);
    assert.match((await response.json()).error, expected);
    assert.equal(serve.worker.state, "stopped");
    assert.ok(t.url);
  },
);

workerTest(
  "a given sql pool is used and left open; functionName comes from the request path",
  async (t) => {
    const pool = t.connect(3);
    const serve = createWorker(v1, {
      sql: pool,
      logLevel: "error",
      logSink: () => {},
      heartbeatIntervalMs: 100,
    });
    try {
      await serve(new Request("http://localhost/functions/v1/my-worker"));
      await serve.worker.start();
      const run = await startFlow(t.sql, { flowSlug: "versioned", input: { n: 0 } });
      await waitForRun(t.sql, run.run_id);
      const [row] = await t
        .sql`select function_name from pgflow.workers where worker_id = ${serve.worker.workerId}`;
      assert.equal(row.function_name, "my-worker");
    } finally {
      await serve.worker.stop();
    }
    const [{ one }] = await pool`select 1 as one`;
    assert.equal(one, 1);
  },
);
