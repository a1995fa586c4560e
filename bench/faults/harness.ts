/**
 * One fault scenario from start to report: its own PostgreSQL (and pgbouncer when asked), a
 * worker process, `runs` runs of the fan-out flow, the fault once the worker is busy (at least a
 * quarter of the tasks done, most of its slots taken), then the wait for every run to end, and
 * the measurements.
 *
 * Time here is real time. The engine clock (pgflow.advance_clock) is not the tool: pgmq compares
 * a message's visibility with the server's real clock, and a killed worker's attempts come back
 * only when that real time has passed; a database being down is real time too.
 */
import type { Sql } from "../../src/db/connect.ts";
import type { PostgresServer } from "../../src/dev/postgres_server.ts";
import { FAULT_FLOW_SLUG, STEP_TIMEOUT_SECONDS, TASKS_PER_RUN } from "./flow.ts";
import { startScenarioDatabase } from "./database.ts";
import { type FaultReport, type FaultTimes, measure, snapshotInFlight } from "./measure.ts";
import { findPgbouncer, type Pgbouncer, startPgbouncer } from "../../tests/_support/pgbouncer.ts";
import { FAULT_WORKER_OPTIONS, type FaultWorker, startFaultWorker } from "./worker.ts";

export interface ScenarioSize {
  runs: number;
  /** How long to wait for the runs after the fault before counting the rest as stuck. */
  deadlineMs: number;
}

/** What a fault gets to work with. */
export interface FaultContext {
  sql: Sql;
  server: PostgresServer;
  /** The worker running now; a fault that kills it starts the next with `replaceWorker`. */
  worker: FaultWorker;
  replaceWorker(): Promise<FaultWorker>;
  /**
   * Saves the tasks in flight now as "in flight at the fault" (with `startedBefore`: only those
   * whose attempt began before then).
   */
  snapshot(startedBefore?: Date): Promise<number>;
}

export interface ScenarioSpec {
  name: string;
  /** Run the worker through a transaction-mode pgbouncer. */
  pooler?: boolean;
  /** Worker options on top of FAULT_WORKER_OPTIONS. */
  workerOptions?: Record<string, unknown>;
  /** Injects the fault; returns when it began and ended. */
  inject(context: FaultContext): Promise<FaultTimes>;
}

/** Why a pooler scenario cannot run here. */
export const PGBOUNCER_MISSING =
  "pgbouncer is not installed (Debian package pgbouncer: apt-get install pgbouncer)";

/** Step timeout + the 2 s margin start_tasks adds to a message's visibility + one poll. */
export const RECOVERY_BOUND_MS = (STEP_TIMEOUT_SECONDS + 2 + FAULT_WORKER_OPTIONS.maxPollSeconds) *
  1000;

export async function runScenario(spec: ScenarioSpec, size: ScenarioSize): Promise<FaultReport> {
  const lap = phaseTimer(spec.name);
  const db = await startScenarioDatabase();
  lap("database");
  let pooler: Pgbouncer | undefined;
  const workers: FaultWorker[] = [];
  try {
    if (spec.pooler) {
      const binary = findPgbouncer();
      if (!binary) throw new Error(PGBOUNCER_MISSING);
      pooler = await startPgbouncer(binary, db.server.url);
    }
    const workerUrl = pooler?.urlFor(db.server.url) ?? db.server.url;
    const startWorker = async () => {
      const worker = await startFaultWorker(workerUrl, spec.workerOptions);
      workers.push(worker);
      return worker;
    };
    const sql = db.sql;
    const first = await startWorker();
    lap("worker answered");
    await waitFor("the worker to register", size.deadlineMs, async () => {
      const [row] = await sql`
        select count(*)::int as n from pgflow.workers
        where queue_name = ${FAULT_FLOW_SLUG} and stopped_at is null`;
      return row.n > 0;
    });
    lap("worker registered");
    await sql`
      select pgflow.start_flow(${FAULT_FLOW_SLUG}, jsonb_build_object('n', i))
      from generate_series(1, ${size.runs}::int) i`;
    const totalTasks = size.runs * TASKS_PER_RUN;
    const busy = Math.ceil(FAULT_WORKER_OPTIONS.maxConcurrent * 0.75);
    await waitFor("the worker to be busy mid-run", size.deadlineMs, async () => {
      const [row] = await sql`
        select count(*) filter (where status = 'completed')::int as done,
               count(*) filter (where status = 'started')::int as running
        from pgflow.step_tasks where flow_slug = ${FAULT_FLOW_SLUG}`;
      return row.done >= totalTasks / 4 && row.running >= busy;
    });

    lap("busy mid-run");
    let current = first;
    const times = await spec.inject({
      sql,
      server: db.server,
      get worker() {
        return current;
      },
      async replaceWorker() {
        current = await startWorker();
        return current;
      },
      snapshot: (startedBefore) => snapshotInFlight(sql, startedBefore),
    });

    lap("fault injected");
    await waitFor("every run to end", size.deadlineMs, async () => {
      const [row] = await sql`
        select count(*)::int as n from pgflow.runs
        where flow_slug = ${FAULT_FLOW_SLUG} and status = 'started'`;
      return row.n === 0;
    }).catch(() => {/* the rest counts as stuck */});
    lap("runs ended");
    const stoppingAt = Date.now();
    await Promise.all(workers.map((worker) => worker.stop()));
    lap("workers stopped");
    return await measure(sql, {
      scenario: spec.name,
      runs: size.runs,
      times,
      recoveryBoundMs: RECOVERY_BOUND_MS,
      logs: workers.flatMap((worker) => worker.log),
      stoppingAt,
    });
  } finally {
    await Promise.all(workers.map((worker) => worker.kill().catch(() => {})));
    await pooler?.stop();
    await db.stop();
    lap("database stopped");
  }
}

/** With FAULT_DEBUG set, prints how long each phase of a scenario took. */
function phaseTimer(scenario: string): (phase: string) => void {
  if (!Deno.env.get("FAULT_DEBUG")) return () => {};
  let last = performance.now();
  return (phase) => {
    const now = performance.now();
    console.warn(`${scenario}: ${phase} after ${(now - last).toFixed(0)} ms`);
    last = now;
  };
}

/** Polls `probe` (errors count as "not yet": the database may be down) until it holds. */
export async function waitFor(
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
