/**
 * Workers as Supabase runs them: served by the local edge runtime, booted by
 * the keep-alive loop (pg_net's part), handing over at the wall-clock limit.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { stopRuntime } from "./_support/edge_runtime.ts";
import { eventually } from "./_support/eventually.ts";
import { startEdgeRuntime } from "../src/dev/edge_runtime/mod.ts";
import { startKeepAlive } from "../src/dev/keep_alive.ts";
import { SUPABASE_DIR } from "../src/dev/supabase_project.ts";
import { applyMigrations, readMigrations } from "../src/db/migrate.ts";
import { startFlow } from "../src/db/runs.ts";
import { installPgmq } from "../src/dev/pgmq.ts";
import { freePort } from "../src/dev/postgres_server.ts";

const FIXTURES = new URL("./fixtures/functions/", import.meta.url).pathname;

dbTest(
  "the example worker in supabase/functions completes runs of the spec's flow",
  async ({ sql, url }) => {
    await installPgmq(sql);
    await applyMigrations(sql, await readMigrations(new URL(`file://${SUPABASE_DIR}migrations/`)));
    const runtime = await startEdgeRuntime({
      functionsDir: `${SUPABASE_DIR}functions`,
      env: { SUPABASE_DB_URL: url },
      bootTimeoutMs: 60_000,
    });
    try {
      const boot = await runtime.invoke("analyze-website-worker", { method: "POST" });
      const status = await boot.json();
      assert.equal(boot.status, 200, JSON.stringify(status));
      assert.equal(status.flow, "analyze_website");
      const runs = await Promise.all(
        ["https://a.example", "https://b.example", "https://c.example"].map((site) =>
          startFlow(sql, { flowSlug: "analyze_website", input: { url: site } })
        ),
      );
      await eventually("3 analyze_website runs completed", async () => {
        const [row] = await sql`
        select count(*)::int as n from pgflow.runs where status = 'completed'
        and run_id = any(${runs.map((r) => r.run_id)}::uuid[])`;
        return row.n === 3;
      }, 60_000);
      const [first] = await sql`select output from pgflow.runs where run_id = ${runs[0].run_id}`;
      assert.equal(first.output.saveToDb.url, "https://a.example");
      const [worker] = await sql`select function_name from pgflow.workers`;
      assert.equal(worker.function_name, "analyze-website-worker");
    } finally {
      await stopRuntime(runtime);
    }
  },
  { template: "empty" },
);

dbTest(
  "a worker that reaches its wall-clock limit mid-work hands over: nothing lost, nothing twice",
  async ({ sql, url }) => {
    await sql`create table handover_log (run_id uuid, task_index int, instance text, at timestamptz default clock_timestamp())`;
    const runtime = await startEdgeRuntime({
      functionsDir: FIXTURES,
      bootTimeoutMs: 60_000,
      env: { SUPABASE_DB_URL: url },
      // Long enough for an instance to boot and work on a loaded machine, short enough
      // that 100 runs of 150 ms tasks (4 at a time, ~3.8 s of work) outlive one instance.
      wallClockMs: 4_000,
      earlyDropMs: 60_000,
    });
    await sql`select pgflow.track_worker_function('handover-worker')`;
    await sql`update pgflow.worker_functions set debounce = '200 milliseconds'`;
    const keepAlive = startKeepAlive({
      sql,
      runtime,
      intervalMs: 100,
      heartbeatTimeout: "2 seconds",
    });
    try {
      // The first worker compiles the flow at startup; then the runs.
      await eventually("the flow compiled by the first worker", async () => {
        const [row] =
          await sql`select count(*)::int as n from pgflow.flows where flow_slug = 'handover'`;
        return row.n === 1;
      });
      const runIds: string[] = [];
      for (let i = 0; i < 100; i++) {
        runIds.push((await startFlow(sql, { flowSlug: "handover", input: i })).run_id);
      }

      await eventually("100 handover runs completed", async () => {
        const [row] = await sql`
        select count(*)::int as n from pgflow.runs where flow_slug = 'handover' and status = 'completed'`;
        return row.n === 100;
      }, 90_000);

      const outputs = await sql`select input, output from pgflow.runs where flow_slug = 'handover'`;
      for (const row of outputs) assert.deepEqual(row.output, { work: row.input * 2 });
      const tasks = await sql`
      select t.run_id, t.attempts_count, t.status,
             (select count(*)::int from handover_log l where l.run_id = t.run_id) as executions
      from pgflow.step_tasks t where t.flow_slug = 'handover'`;
      assert.equal(tasks.length, 100);
      for (const task of tasks) {
        assert.equal(task.status, "completed");
        // Each attempt ran at most once; an attempt cut off by the limit was retried.
        assert.ok(
          task.executions >= 1 && task.executions <= task.attempts_count,
          JSON.stringify(task),
        );
      }
      const [archived] =
        await sql`select count(*)::int as n, count(distinct message->>'run_id')::int as runs from pgmq.a_handover`;
      assert.deepEqual(
        archived,
        { n: 100, runs: 100 },
        "each task's message archived exactly once",
      );
      const [instances] = await sql`select count(distinct instance)::int as n from handover_log`;
      assert.ok(
        instances.n >= 2,
        `work was done by ${instances.n} instance(s); a successor should have taken over`,
      );
      const [stopped] =
        await sql`select count(*)::int as n from pgflow.workers where stopped_at is not null`;
      assert.ok(stopped.n >= 1, "the retired worker marked itself stopped");
    } finally {
      await keepAlive.stop();
      await stopRuntime(runtime);
    }
  },
);

dbTest(
  "without the keep-alive job, a retiring worker asks for its own successor",
  async ({ sql, url }) => {
    await sql`create table handover_log (run_id uuid, task_index int, instance text, at timestamptz default clock_timestamp())`;
    const port = freePort();
    const runtime = await startEdgeRuntime({
      functionsDir: FIXTURES,
      bootTimeoutMs: 60_000,
      port,
      // The worker finds its own function through SUPABASE_URL, as on Supabase.
      env: {
        SUPABASE_DB_URL: url,
        SUPABASE_URL: `http://127.0.0.1:${port}`,
        SUPABASE_SERVICE_ROLE_KEY: "local-key",
      },
      wallClockMs: 4_000,
      earlyDropMs: 60_000,
    });
    try {
      const boot = await runtime.invoke("handover-worker", { method: "POST" });
      assert.equal(boot.status, 200);
      await boot.body?.cancel();
      await eventually("the flow compiled by the first worker", async () => {
        const [row] =
          await sql`select count(*)::int as n from pgflow.flows where flow_slug = 'handover'`;
        return row.n === 1;
      });
      for (let i = 0; i < 100; i++) await startFlow(sql, { flowSlug: "handover", input: i });
      await eventually("100 handover runs completed", async () => {
        const [row] = await sql`
        select count(*)::int as n from pgflow.runs where flow_slug = 'handover' and status = 'completed'`;
        return row.n === 100;
      }, 90_000);
      const [instances] = await sql`select count(distinct instance)::int as n from handover_log`;
      assert.ok(instances.n >= 2, `work was done by ${instances.n} instance(s)`);
    } finally {
      await stopRuntime(runtime);
    }
  },
);
