/** The worker's life: states, deprecation, shutdown with work in flight, platform events. */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import { deprecateWorkers } from "../src/db/workers.ts";
import { Flow } from "../src/dsl/mod.ts";
import { createWorker } from "../src/worker/create_worker.ts";
import { WorkerStateError } from "../src/worker/errors.ts";
import { Lifecycle } from "../src/worker/lifecycle.ts";
import type { SupabaseClient } from "@supabase/supabase-js";
import { freePort } from "../src/dev/postgres_server.ts";
import { eventually } from "./_support/eventually.ts";
import { gate, waitForRun, workerTest } from "./_support/worker.ts";

const echo = () =>
  new Flow<{ n: number }>({ slug: "echo" }).step({ slug: "double" }, ({ run }) => run.n * 2);

Deno.test("lifecycle: allowed transitions, and clear errors for the others", () => {
  const changes: string[] = [];
  const lifecycle = new Lifecycle("w1", (from, to) => changes.push(`${from}->${to}`));
  lifecycle.go("starting");
  lifecycle.go("running");
  assert.throws(() => lifecycle.go("starting"), (error: unknown) => {
    assert.ok(error instanceof WorkerStateError);
    assert.equal(
      error.message,
      'worker w1 cannot go from "running" to "starting" (allowed from "running": deprecated, stopping)',
    );
    return true;
  });
  lifecycle.go("deprecated");
  lifecycle.go("stopping");
  lifecycle.go("stopped");
  assert.throws(
    () => lifecycle.go("running"),
    /from "stopped" to "running" \(allowed from "stopped": nothing, it is final\)/,
  );
  assert.deepEqual(changes, [
    "created->starting",
    "starting->running",
    "running->deprecated",
    "deprecated->stopping",
    "stopping->stopped",
  ]);
});

workerTest(
  "a worker stopped before it started stays stopped; a stopped worker cannot start",
  async (t) => {
    const serve = createWorker(echo(), { connectionString: t.url, logLevel: "error" });
    assert.equal(serve.worker.state, "created");
    await serve.worker.stop();
    assert.equal(serve.worker.state, "stopped");
    assert.throws(() => serve.worker.start(), WorkerStateError);
    const status = await (await serve(new Request("http://localhost/"))).json();
    assert.equal(status.state, "stopped");

    // stop() while starting: the start is cut short and the worker ends stopped, unregistered work.
    const { worker } = await t.start(echo());
    assert.equal(worker.state, "starting");
    await worker.stop();
    assert.equal(worker.state, "stopped");
    await worker.start().catch(() => {});
  },
);

workerTest("later requests answer the current state", async (t) => {
  const { serve, first } = await t.start(echo());
  assert.equal(first.state, "starting");
  await serve.worker.start();
  const response = await serve(new Request("http://localhost/echo"));
  assert.equal(response.status, 200);
  const status = await response.json();
  assert.deepEqual(
    [status.workerId, status.state, status.flow, status.inFlight],
    [first.workerId, "running", "echo", 0],
  );
});

workerTest("deprecation stops polling and shuts the worker down", async (t) => {
  const { worker, status, logs } = await t.run(echo());
  const before = await startFlow(t.sql, { flowSlug: "echo", input: { n: 1 } });
  await waitForRun(t.sql, before.run_id);
  const workerConnections = async () => {
    const [open] = await t.sql`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name = 'edgeflow worker echo'`;
    return open.n as number;
  };
  assert.ok(await workerConnections() > 0, "a running worker is connected");

  assert.equal(await deprecateWorkers(t.sql), 1);
  await worker.done;
  assert.equal((await status()).state, "stopped");
  assert.ok(logs.some((record) => record.msg.startsWith("worker deprecated")));
  const states = logs.filter((record) => record.msg === "worker state changed").map((record) =>
    record.fields.to
  );
  assert.deepEqual(states, ["starting", "running", "deprecated", "stopping", "stopped"]);
  const [row] = await t
    .sql`select deprecated_at, stopped_at from pgflow.workers where worker_id = ${worker.workerId}`;
  assert.ok(row.deprecated_at instanceof Date && row.stopped_at instanceof Date);

  // Nothing reads the queue any more: the stopped worker has closed every connection it had,
  // so a new run's message stays unread.
  await eventually(
    "the stopped worker's connections to close",
    async () => await workerConnections() === 0,
  );
  const reads = worker.pollStats.reads;
  const after = await startFlow(t.sql, { flowSlug: "echo", input: { n: 2 } });
  const [message] = await t.sql`
    select q.read_ct from pgflow.step_tasks t join pgmq.q_echo q on q.msg_id = t.message_id
    where t.run_id = ${after.run_id}`;
  assert.equal(message.read_ct, 0);
  assert.equal(worker.pollStats.reads, reads);
});

workerTest("shutdown with tasks in flight waits for them and reports them", async (t) => {
  const release = gate();
  const shutdownSeen: boolean[] = [];
  const flow = new Flow<{ n: number }>({ slug: "slow_echo" })
    .step({ slug: "wait" }, async ({ run }, context) => {
      await release.promise;
      shutdownSeen.push(context.shutdownSignal.aborted, context.signal.aborted);
      return run.n;
    });
  const { worker, status } = await t.run(flow);
  const runs = [];
  for (let n = 0; n < 3; n++) {
    runs.push(await startFlow(t.sql, { flowSlug: "slow_echo", input: { n } }));
  }
  await eventually("3 tasks in flight", () => worker.status().inFlight === 3);

  const stopped = worker.stop();
  assert.equal((await status()).state, "stopping");
  const late = await startFlow(t.sql, { flowSlug: "slow_echo", input: { n: 99 } });
  release.open();
  await stopped;

  assert.equal(worker.state, "stopped");
  assert.deepEqual(shutdownSeen, [true, false, true, false, true, false]);
  for (const run of runs) await waitForRun(t.sql, run.run_id, "completed", 1_000);
  const [lateTask] = await t
    .sql`select status from pgflow.step_tasks where run_id = ${late.run_id}`;
  assert.equal(lateTask.status, "queued");
  const [row] = await t
    .sql`select stopped_at from pgflow.workers where worker_id = ${worker.workerId}`;
  assert.ok(row.stopped_at instanceof Date);
});

workerTest("stop() cancels an idle long poll at once", async (t) => {
  const { worker } = await t.run(echo(), {
    listen: false,
    maxPollSeconds: 30,
    pollIntervalMs: 1_000,
  });
  await eventually("a long poll to be open", () => worker.pollStats.longPolls > 0);
  const started = Date.now();
  await worker.stop();
  assert.ok(Date.now() - started < 2_000, `stop took ${Date.now() - started} ms`);
});

workerTest(
  "beforeunload (any reason) stops the worker; EdgeRuntime.waitUntil keeps it alive",
  async (t) => {
    const kept: Promise<unknown>[] = [];
    const global = globalThis as { EdgeRuntime?: unknown };
    global.EdgeRuntime = { waitUntil: (promise: Promise<unknown>) => kept.push(promise) };
    try {
      const { worker } = await t.run(echo());
      assert.equal(kept.length, 1);
      globalThis.dispatchEvent(
        new CustomEvent("beforeunload", { detail: { reason: "wall_clock" } }),
      );
      await kept[0];
      assert.equal(worker.state, "stopped");
      const [row] = await t
        .sql`select stopped_at from pgflow.workers where worker_id = ${worker.workerId}`;
      assert.ok(row.stopped_at instanceof Date);
    } finally {
      delete global.EdgeRuntime;
    }
  },
);

workerTest(
  "a worker ended for a limit has sent its successor request before it counts as stopped",
  async (t) => {
    const asked: string[] = [];
    const answer = gate();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      asked.push(`${req.method} ${new URL(req.url).pathname} ${req.headers.get("authorization")}`);
      await answer.promise;
      return Response.json({ booted: true });
    });
    try {
      const { worker } = await t.run(echo(), {
        env: {
          SUPABASE_URL: `http://127.0.0.1:${server.addr.port}`,
          SUPABASE_SERVICE_ROLE_KEY: "k",
        },
      });
      globalThis.dispatchEvent(
        new CustomEvent("beforeunload", { detail: { reason: "wall_clock" } }),
      );
      // Everything else is released (the worker row says stopped); the request is still open.
      await eventually("the worker marked stopped", async () => {
        const [row] = await t
          .sql`select stopped_at from pgflow.workers where worker_id = ${worker.workerId}`;
        return row.stopped_at !== null;
      });
      assert.deepEqual(asked, ["POST /functions/v1/echo Bearer k"]);
      assert.equal(worker.state, "stopping");
      answer.open();
      await worker.done;
      assert.equal(worker.state, "stopped");
    } finally {
      answer.open();
      await server.shutdown();
    }
  },
);

workerTest(
  "stop() closes the realtime channels handlers opened on context.supabase",
  async (t) => {
    let client: SupabaseClient | undefined;
    const flow = new Flow({ slug: "realtime" }).step({ slug: "subscribe" }, (_input, context) => {
      client = context.supabase;
      client!.channel("room").subscribe();
      return 1;
    });
    // Nothing listens there: the channel keeps retrying (timers) until it is closed.
    const { worker } = await t.run(flow, {
      env: { SUPABASE_URL: `http://127.0.0.1:${freePort()}`, SUPABASE_SERVICE_ROLE_KEY: "k" },
    });
    await waitForRun(t.sql, (await startFlow(t.sql, { flowSlug: "realtime", input: {} })).run_id);
    assert.equal(client!.getChannels().length, 1);
    await worker.stop();
    assert.deepEqual(client!.getChannels(), []);
    assert.equal(client!.realtime.isConnected(), false);
  },
  {
    unclosableThirdPartyTimer: "realtime-js 2.119 SocketAdapter.disconnect() schedules a 10 s " +
      "fallback timer it never clears, even after the socket has closed",
  },
);

workerTest("SB_EXECUTION_ID names the worker when it is a UUID", async (t) => {
  const id = crypto.randomUUID();
  const { worker, first } = await t.run(echo(), { env: { SB_EXECUTION_ID: id } });
  assert.equal(worker.workerId, id);
  assert.equal(first.workerId, id);
  const { worker: other } = await t.start(echo(), { env: { SB_EXECUTION_ID: "not-a-uuid" } });
  assert.notEqual(other.workerId, "not-a-uuid");
  assert.match(other.workerId, /^[0-9a-f-]{36}$/);
});

workerTest(
  "SIGTERM in plain Deno: in-flight work finishes, the worker is marked stopped, exit 143",
  async (t) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./_support/signal_worker.ts", import.meta.url).pathname, t.url],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let workerId = "";
    while (!workerId.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      workerId += value;
    }
    workerId = workerId.trim();
    assert.match(workerId, /^[0-9a-f-]{36}$/);
    const run = await startFlow(t.sql, { flowSlug: "signalled", input: { ms: 300 } });
    await eventually("the task to start", async () => {
      const [task] = await t.sql`select status from pgflow.step_tasks where run_id = ${run.run_id}`;
      return task.status === "started";
    });
    child.kill("SIGTERM");
    const status = await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    assert.equal(status.code, 143, stderr);
    await waitForRun(t.sql, run.run_id, "completed", 1_000);
    const [row] = await t.sql`select stopped_at from pgflow.workers where worker_id = ${workerId}`;
    assert.ok(row.stopped_at instanceof Date);
  },
);
