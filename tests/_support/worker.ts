/**
 * Runs real workers against a test database: `workerTest(name, async (t) => ...)` gives the
 * harness's database plus `t.start(flowOrHandler, options)`, and stops every worker it started
 * at the end of the test, whether the test passed or not.
 */
import { createWorker, type WorkerHandler } from "../../src/worker/create_worker.ts";
import type { LogRecord } from "../../src/worker/logger.ts";
import type {
  BaseWorkerOptions,
  FlowWorkerOptions,
  QueueWorkerOptions,
} from "../../src/worker/options.ts";
import type { QueueHandler } from "../../src/worker/queue_worker.ts";
import type { Worker, WorkerStatus } from "../../src/worker/worker.ts";
import type { AnyFlow } from "../../src/dsl/flow.ts";
import { dbTest, type DbTestOptions, type TestDb } from "./db.ts";
import { eventually } from "./eventually.ts";

/** Short intervals so tests see heartbeats, polls and shutdowns quickly. */
export const FAST = {
  heartbeatIntervalMs: 100,
  pollIntervalMs: 50,
  maxPollSeconds: 1,
  shutdownGraceMs: 3_000,
  recoveryIntervalMs: 0,
} as const;

export interface StartedWorker {
  serve: WorkerHandler;
  worker: Worker;
  /** Every log record of this worker, oldest first. */
  logs: LogRecord[];
  /** What the first request answered. */
  first: WorkerStatus;
  /** GETs the worker's endpoint and returns the JSON. */
  status(): Promise<WorkerStatus>;
}

export interface WorkerTestContext extends TestDb {
  /** Creates a worker on this database and sends it its first request (which boots it). */
  start(flow: AnyFlow, options?: FlowWorkerOptions): Promise<StartedWorker>;
  startQueue<T>(handler: QueueHandler<T>, options: QueueWorkerOptions): Promise<StartedWorker>;
  /** Like start, then waits until the worker is running. */
  run(flow: AnyFlow, options?: FlowWorkerOptions): Promise<StartedWorker>;
}

const PRINT_LOGS = Boolean(Deno.env.get("EDGEFLOW_TEST_LOGS"));

export function workerTest(
  name: string,
  fn: (t: WorkerTestContext) => Promise<void>,
  options: Pick<DbTestOptions, "unclosableThirdPartyTimer"> = {},
): void {
  dbTest(name, async (db) => {
    const workers: Worker[] = [];
    /** Creates a worker with the test's database and log capture, and sends its first request. */
    const boot = async (
      create: (
        common: Pick<BaseWorkerOptions, "connectionString" | "logLevel" | "logSink">,
      ) => WorkerHandler,
    ): Promise<StartedWorker> => {
      const logs: LogRecord[] = [];
      const serve = create({
        connectionString: db.url,
        logLevel: "debug",
        logSink: (record) => {
          logs.push(record);
          if (PRINT_LOGS) console.log(record.line);
        },
      });
      workers.push(serve.worker);
      const response = await serve(new Request("http://localhost/"));
      const first = await response.json() as WorkerStatus;
      return {
        serve,
        worker: serve.worker,
        logs,
        first,
        status: async () => await (await serve(new Request("http://localhost/"))).json(),
      };
    };
    const start = (flow: AnyFlow, options: FlowWorkerOptions = {}) =>
      boot((common) => createWorker(flow, { ...common, ...FAST, ...options }));
    const context: WorkerTestContext = {
      ...db,
      start,
      startQueue: (handler, options) => {
        const { recoveryIntervalMs: _, ...fast } = FAST;
        return boot((common) => createWorker(handler, { ...common, ...fast, ...options }));
      },
      run: async (flow, options) => {
        const started = await start(flow, options);
        await started.worker.start();
        return started;
      },
    };
    try {
      await fn(context);
    } finally {
      await Promise.all(workers.map((worker) => worker.stop("test finished")));
    }
  }, options);
}

/** Waits for a run to reach `completed` or `failed` and returns its row. */
export async function waitForRun(
  sql: TestDb["sql"],
  runId: string,
  status: "completed" | "failed" = "completed",
  timeoutMs = 30_000,
): Promise<{ status: string; output: unknown }> {
  return await eventually(`run ${runId} to be ${status}`, async () => {
    const [run] = await sql<{ status: string; output: unknown }[]>`
      select status, output from pgflow.runs where run_id = ${runId}`;
    if (run && run.status !== "started" && run.status !== status) {
      throw new Error(`run ${runId} ended ${run.status}, expected ${status}`);
    }
    return run?.status === status ? run : undefined;
  }, timeoutMs);
}

/** A promise with its resolve function, for handlers the test releases. */
export function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => open = resolve);
  return { promise, open };
}
