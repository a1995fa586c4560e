/**
 * Database outages: a worker on its own PostgreSQL server (the embedded 17's binaries run with
 * pg_ctl, so the test can stop and start it on the same port and data) loses the database for
 * about 5 s, or sees a fast restart. Afterwards it must be back within 2 s: heartbeats resume,
 * LISTEN is re-subscribed and wakes it for new runs, and handlers that finished during the
 * outage get their reports through (retried, not re-run after a timeout). Each failing activity
 * logs one line with its cause per episode, and one when it recovers.
 */
import assert from "node:assert/strict";
import { connect, type Sql } from "../src/db/connect.ts";
import { applyMigrations, readMigrations } from "../src/db/migrate.ts";
import { startFlow } from "../src/db/runs.ts";
import { installPgmq } from "../src/dev/pgmq.ts";
import { Flow } from "../src/dsl/mod.ts";
import { createWorker } from "../src/worker/create_worker.ts";
import type { LogRecord } from "../src/worker/logger.ts";
import { eventually } from "./_support/eventually.ts";
import {
  embeddedPostgresBin,
  startSystemPostgres,
  type SystemServer,
} from "./_support/system_postgres.ts";
import { gate, waitForRun } from "./_support/worker.ts";

const PRINT_LOGS = Boolean(Deno.env.get("EDGEFLOW_TEST_LOGS"));
const OUTAGE_MS = 5_000;
/** The default heartbeat interval, which the worker keeps. */
const HEARTBEAT_MS = 5_000;

interface Setup {
  server: SystemServer;
  sql: Sql;
  logs: LogRecord[];
  workerId: string;
  /** Lets the held handlers finish. */
  release(): void;
  stop(): Promise<void>;
}

/**
 * A two-step flow: `first` doubles `n` (and waits for `release()` when the run says `hold`),
 * `second` adds one. The worker keeps its default heartbeat (5 s) and waits up to 30 s when
 * idle, so a new run is only picked up promptly through a LISTEN wake-up.
 */
async function setUp(listen: boolean): Promise<Setup> {
  const server = await startSystemPostgres(await embeddedPostgresBin());
  const sql = connect(server.url, { max: 2 });
  await installPgmq(sql);
  await applyMigrations(sql, await readMigrations());
  const held = gate();
  // A short timeout (yet longer than a handler held through the outage): a claim whose acknowledgement the outage swallowed (complete_tasks_and_claim
  // committed, the answer never arrived) comes back after timeout + 2 s, as any lost claim does.
  const flow = new Flow<{ n: number; hold: boolean }>({ slug: "outage", timeout: 10 })
    .step({ slug: "first" }, async ({ run }) => {
      if (run.hold) await held.promise;
      return run.n * 2;
    })
    .step({ slug: "second", dependsOn: ["first"] }, ({ first }) => first + 1);
  const logs: LogRecord[] = [];
  const serve = createWorker(flow, {
    connectionString: server.url,
    maxPollSeconds: 30,
    listen,
    recoveryIntervalMs: 0,
    logLevel: "debug",
    logSink: (record) => {
      logs.push(record);
      if (PRINT_LOGS) console.log(record.line);
    },
  });
  await serve.worker.start();
  return {
    server,
    sql,
    logs,
    workerId: serve.worker.workerId,
    release: () => held.open(),
    async stop() {
      await serve.worker.stop("test finished");
      await sql.end({ timeout: 1 });
      await server.stop();
    },
  };
}

async function lastHeartbeat(setup: Setup): Promise<number> {
  const [row] = await setup.sql<{ at: Date }[]>`
    select last_heartbeat_at as at from pgflow.workers where worker_id = ${setup.workerId}`;
  return row.at.getTime();
}

/** When the backend that LISTENs for the worker's wake-ups connected (after the return). */
async function listenerStart(setup: Setup): Promise<number | undefined> {
  // Its last statement is the LISTEN on the wake-up or on the cancel channel (same connection).
  const [row] = await setup.sql<{ at: Date }[]>`
    select backend_start as at from pg_stat_activity
    where query ilike 'listen %pgflow:%:outage%'`;
  return row?.at.getTime();
}

/** When the server that runs now started: the database's return, on the database's clock. */
async function serverStart(setup: Setup): Promise<number> {
  const [row] = await eventually(
    "the server to answer",
    () => setup.sql<{ at: Date }[]>`select pg_postmaster_start_time() as at`.catch(() => undefined),
  );
  return row.at.getTime();
}

/** Runs held in `first` across the database's absence, then a fresh run after its return. */
function outageCase(
  name: string,
  interrupt: (setup: Setup) => Promise<void>,
  options: { listen: boolean } = { listen: true },
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const setup = await setUp(options.listen);
      try {
        const { sql } = setup;
        const held = await Promise.all(
          [1, 2].map((n) => startFlow(sql, { flowSlug: "outage", input: { n, hold: true } })),
        );
        await eventually("both held tasks to start", async () => {
          const [{ count }] = await sql<{ count: number }[]>`
            select count(*)::int as count from pgflow.step_tasks
            where step_slug = 'first' and status = 'started'`;
          return count === 2;
        });
        const beatBefore = await lastHeartbeat(setup);

        const down = Date.now();
        await interrupt(setup);
        const back = await serverStart(setup);

        const beatAfter = await eventually(
          "a heartbeat after the database came back",
          async () => {
            const at = await lastHeartbeat(setup).catch(() => 0);
            return at > back && at;
          },
          10_000,
        );
        const listenAt = options.listen
          ? await eventually(
            "LISTEN re-subscribed",
            () => listenerStart(setup).catch(() => undefined),
            10_000,
          )
          : NaN;
        const figures = {
          outageMs: back - down,
          heartbeatGapMs: beatAfter - beatBefore,
          heartbeatBackMs: beatAfter - back,
          listenBackMs: listenAt - back,
        };
        console.log(`${name}: ${JSON.stringify(figures)}`);

        // The held runs finish with the outputs their handlers returned during the outage.
        for (const [index, run] of held.entries()) {
          const done = await waitForRun(sql, run.run_id, "completed", 30_000);
          assert.deepEqual(done.output, { second: (index + 1) * 2 + 1 });
        }
        // The held tasks' reports were retried, not recovered after the step timeout and run
        // again. (A "second" task claimed by a report whose answer was lost may take one more.)
        const attempts = await sql<{ step_slug: string; attempts_count: number }[]>`
          select step_slug, attempts_count from pgflow.step_tasks order by run_id, step_slug`;
        for (const task of attempts) {
          const most = task.step_slug === "first" ? 1 : 2;
          assert.ok(task.attempts_count <= most, JSON.stringify(attempts));
        }

        // A new run is picked up through a wake-up (the idle wait is 30 s), or the long poll.
        const fresh = await startFlow(sql, { flowSlug: "outage", input: { n: 5, hold: false } });
        assert.deepEqual((await waitForRun(sql, fresh.run_id, "completed", 10_000)).output, {
          second: 11,
        });

        // One line per failure episode, with its cause, and one when it recovered; a restart
        // may flap (the old server refuses new sessions, then a pooled session it ended is
        // found dead on its next use), a few at most, never a flood.
        const during = setup.logs.filter((r) => r.time.getTime() >= down);
        const log = lines(during);
        const count = (msg: string) => during.filter((r) => r.msg === msg).length;
        const heartbeatFailed = during.filter((r) => r.msg === "heartbeat failed");
        const pollFailed = during.filter((r) => r.msg === "poll failed");
        const reportFailed = during.filter((r) => r.msg.startsWith("could not report"));
        for (const failed of [heartbeatFailed, pollFailed, reportFailed]) {
          assert.ok(failed.length <= 4, log);
          assert.ok(failed.every((r) => /\w/.test(String(r.fields.error))), "names its cause");
        }
        assert.equal(count("heartbeat recovered"), heartbeatFailed.length, log);
        assert.equal(count("polling recovered"), pollFailed.length, log);
        assert.equal(count("report went through"), reportFailed.length, log);
        if (heartbeatFailed.length > 0) {
          assert.ok(
            figures.heartbeatBackMs < 2_000,
            `heartbeat came back ${figures.heartbeatBackMs} ms after the database`,
          );
        } else {
          // The restart fell between two heartbeats: none was missed.
          assert.ok(figures.heartbeatGapMs < HEARTBEAT_MS + 2_000, JSON.stringify(figures));
        }
        // The keep-alive job counts a worker dead after 15 s without a heartbeat.
        assert.ok(figures.heartbeatGapMs < 15_000, JSON.stringify(figures));
        assert.ok(
          !options.listen || figures.listenBackMs < 2_000,
          `LISTEN came back ${figures.listenBackMs} ms after the database`,
        );
        console.log(
          `${name}: failure lines: heartbeat ${heartbeatFailed.length}, ` +
            `poll ${pollFailed.length}, reports ${reportFailed.length}`,
        );
      } finally {
        await setup.stop();
      }
    },
  });
}

function lines(records: LogRecord[]): string {
  return records.map((r) => r.line).join("\n");
}

outageCase("after a 5 s outage the worker is back within 2 s", async (setup) => {
  await setup.server.halt();
  // The handlers finish while the database is away: their reports must wait for it.
  setup.release();
  // The outage itself is real time.
  await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
  await setup.server.resume();
});

outageCase("after a fast restart the worker is back within 2 s", async (setup) => {
  setup.release();
  await setup.server.restart();
});

// Long polls run on a connection of their own, which must reconnect too (a connection taken
// with postgres.js's reserve() did not, and made the process throw).
outageCase("after a fast restart a long-polling worker is back within 2 s", async (setup) => {
  setup.release();
  await setup.server.restart();
}, { listen: false });
