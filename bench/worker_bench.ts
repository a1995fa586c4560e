/**
 * Worker benchmark (issue 12): end-to-end throughput and latency of worker processes with the
 * default settings users run and with tuned settings, against the server's own commit rate;
 * map completion time; scale-out over 1, 2 and 4 processes; the worker's peak memory. Each
 * scenario gets a fresh database and fresh worker processes (bench/worker_process.ts).
 */
import { median } from "./percentiles.ts";
import { connect, type Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import type { BenchFlowName } from "./flows.ts";
import { freePort } from "../src/dev/postgres_server.ts";
import { eventually } from "../tests/_support/eventually.ts";
import { resetStatementStats, type StatementStat, statementStats } from "./statements.ts";

export interface Server {
  /** A fresh database with pgmq and the core. */
  createDatabase(): Promise<{ url: string; drop(): Promise<void> }>;
}

/** Default settings: what `createWorker(flow)` does with no options. */
export const DEFAULT_OPTIONS = {};
/** Tuned for many short tasks (README, "Worker options"). */
export const TUNED_OPTIONS = { maxConcurrent: 100, batchSize: 50, maxPgConnections: 4 };
export type Settings = "default" | "tuned";
const OPTIONS: Record<Settings, Record<string, unknown>> = {
  default: DEFAULT_OPTIONS,
  tuned: TUNED_OPTIONS,
};

interface WorkerProcess {
  memory(): Promise<{ peakRssMb: number; rssMb: number }>;
  stop(): Promise<void>;
}

async function startWorker(
  flow: BenchFlowName,
  dbUrl: string,
  options: Record<string, unknown> = {},
): Promise<WorkerProcess> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./worker_process.ts", import.meta.url).pathname, flow, `${port}`],
    env: {
      EDGE_WORKER_DB_URL: dbUrl,
      BENCH_WORKER_OPTIONS: JSON.stringify({ logLevel: "warn", ...options }),
    },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  // The first request boots the worker, as on Supabase.
  const deadline = Date.now() + 20_000;
  while (true) {
    try {
      const response = await fetch(`${base}/`, { method: "POST" });
      await response.body?.cancel();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`bench worker for ${flow} did not answer: ${error}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    async memory() {
      return await (await fetch(`${base}/_bench/memory`)).json();
    },
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await child.status;
      clearTimeout(timer);
    },
  };
}

/** Benchmarks wait for minutes where tests wait for seconds. */
const waitFor = (what: string, probe: () => Promise<boolean>) => eventually(what, probe, 300_000);

async function waitForWorkers(sql: Sql, flow: string, count = 1) {
  await waitFor(`${count} registered worker(s) for ${flow}`, async () => {
    const [row] = await sql`
      select count(*)::int as n from pgflow.workers where queue_name = ${flow} and stopped_at is null`;
    return row.n >= count;
  });
}

/** Tasks per second between the first task start and the last task completion. */
async function taskRate(sql: Sql, flow: string): Promise<number> {
  const [row] = await sql`
    select count(*)::int as tasks,
           extract(epoch from max(completed_at) - min(started_at))::float8 as seconds
    from pgflow.step_tasks where flow_slug = ${flow} and status = 'completed'`;
  return row.tasks / row.seconds;
}

async function startRunsInBulk(sql: Sql, flow: string, count: number) {
  await sql`select pgflow.start_flow(${flow}, to_jsonb(i)) from generate_series(1, ${count}::int) i`;
}

async function allCompleted(sql: Sql, flow: string, count: number): Promise<boolean> {
  const [row] = await sql`
    select count(*)::int as n from pgflow.runs where flow_slug = ${flow} and status = 'completed'`;
  return row.n >= count;
}

/** Every task ran exactly once: one attempt each, all completed. */
async function attemptsOk(sql: Sql, flow: string): Promise<boolean> {
  const [row] = await sql`
    select count(*) filter (where attempts_count <> 1 or status <> 'completed')::int as bad
    from pgflow.step_tasks where flow_slug = ${flow}`;
  return row.bad === 0;
}

/** Starts a run and resolves with the ms until its run:completed event. */
async function timedRun(sql: Sql, listener: Sql, flow: string, input: unknown): Promise<number> {
  const runId = crypto.randomUUID();
  let done!: () => void;
  const completed = new Promise<void>((resolve) => (done = resolve));
  const subscription = await listener.listen(`pgflow:run:${runId}`, (payload) => {
    if (JSON.parse(payload).event === "run:completed") done();
  });
  const began = performance.now();
  // Through edgeflow's own TS call (as a user's code starts a run): one round trip.
  await startFlow(sql, { flowSlug: flow, input, runId });
  await completed;
  const ms = performance.now() - began;
  await subscription.unlisten();
  return ms;
}

/** Opens a fresh database, runs `body`, and always cleans up. */
async function scenario<T>(
  server: Server,
  body: (sql: Sql, url: string, listener: Sql) => Promise<T>,
): Promise<T> {
  const db = await server.createDatabase();
  const sql = connect(db.url, { max: 4 });
  const listener = connect(db.url, { max: 1 });
  try {
    return await body(sql, db.url, listener);
  } finally {
    await Promise.all([sql.end(), listener.end()]);
    await db.drop();
  }
}

/** Throughput scenarios repeated: the machine's noise moves one run's rate by 10-20%. */
const THROUGHPUT_ROUNDS = 3;

/** The median of THROUGHPUT_ROUNDS fresh scenarios; statements from the first. */
async function medianThroughput(...args: Parameters<typeof throughput>): Promise<Throughput> {
  const [server, flow, slug, runs, settings, withStatements] = args;
  const rounds: Awaited<ReturnType<typeof throughput>>[] = [];
  for (let i = 0; i < THROUGHPUT_ROUNDS; i++) {
    rounds.push(await throughput(server, flow, slug, runs, settings, withStatements && i === 0));
  }
  const rates = rounds.map((r) => r.tasksPerSecond);
  return {
    tasksPerSecond: median(rates),
    roundsTasksPerSecond: rates,
    attemptsOk: rounds.every((r) => r.attemptsOk),
    topStatements: rounds[0].topStatements,
  };
}

/** One flow's throughput through one worker process. */
export interface Throughput {
  /** The median of the rounds. */
  tasksPerSecond: number;
  roundsTasksPerSecond: number[];
  /** Every task of every round ran once. */
  attemptsOk: boolean;
  topStatements?: StatementStat[];
}

async function throughput(
  server: Server,
  flow: BenchFlowName,
  slug: string,
  runs: number,
  settings: Settings,
  withStatements = false,
): Promise<{ tasksPerSecond: number; attemptsOk: boolean; topStatements?: StatementStat[] }> {
  return await scenario(server, async (sql, url) => {
    const worker = await startWorker(flow, url, OPTIONS[settings]);
    try {
      await waitForWorkers(sql, slug);
      if (withStatements) await resetStatementStats(sql);
      await startRunsInBulk(sql, slug, runs);
      await waitFor(`${runs} ${slug} runs`, () => allCompleted(sql, slug, runs));
      return {
        tasksPerSecond: await taskRate(sql, slug),
        attemptsOk: await attemptsOk(sql, slug),
        topStatements: withStatements ? (await statementStats(sql)).slice(0, 12) : undefined,
      };
    } finally {
      await worker.stop();
    }
  });
}

/** Diamond runs one at a time on an idle worker; a random pause between runs. */
async function diamondLatencies(
  server: Server,
  options: Record<string, unknown>,
  count: number,
): Promise<number[]> {
  return await scenario(server, async (sql, url, listener) => {
    const worker = await startWorker("diamond", url, options);
    try {
      await waitForWorkers(sql, "bench_diamond");
      for (let i = 0; i < 10; i++) await timedRun(sql, listener, "bench_diamond", i); // warm-up
      const latencies: number[] = [];
      for (let i = 0; i < count; i++) {
        // Runs arrive at times unrelated to the worker's polling.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 100));
        latencies.push(await timedRun(sql, listener, "bench_diamond", i));
      }
      return latencies.sort((a, b) => a - b);
    } finally {
      await worker.stop();
    }
  });
}

/** Timed maps of 1,000 on a warm worker: the median is the figure, the runs show the spread. */
const MAP_1000_RUNS = 5;

async function mapTimes(server: Server, settings: Settings): Promise<MapTimes> {
  return await scenario(server, async (sql, url, listener) => {
    const worker = await startWorker("wideMap", url, OPTIONS[settings]);
    try {
      await waitForWorkers(sql, "bench_map");
      const elements = (width: number) => Array.from({ length: width }, (_, i) => i);
      // Warm-up at full width: a worker serves many runs, and one first run (plans not yet
      // cached, tables not yet grown) is not what a map costs it.
      const map1000FirstMs = await timedRun(sql, listener, "bench_map", elements(1_000));
      const map1000RunsMs: number[] = [];
      for (let i = 0; i < MAP_1000_RUNS; i++) {
        map1000RunsMs.push(await timedRun(sql, listener, "bench_map", elements(1_000)));
      }
      const map10000Ms = await timedRun(sql, listener, "bench_map", elements(10_000));
      return { map1000Ms: median(map1000RunsMs), map1000RunsMs, map1000FirstMs, map10000Ms };
    } finally {
      await worker.stop();
    }
  });
}

/** A map's start to its completion event, as a client sees it. */
export interface MapTimes {
  /** The median of MAP_1000_RUNS maps of 1,000 elements. */
  map1000Ms: number;
  map1000RunsMs: number[];
  /** The warm-up: the first wide map the worker ran (what earlier rounds timed, once). */
  map1000FirstMs: number;
  map10000Ms: number;
}

/** One-step runs through 1, 2 and 4 worker processes on one flow (default settings). */
async function scaleOut(server: Server, runs: number) {
  const points: { workers: number; tasksPerSecond: number; attemptsOk: boolean }[] = [];
  for (const count of [1, 2, 4]) {
    points.push(
      await scenario(server, async (sql, url) => {
        const workers = await Promise.all(
          Array.from({ length: count }, () => startWorker("oneStep", url, DEFAULT_OPTIONS)),
        );
        try {
          await waitForWorkers(sql, "bench_one", count);
          await startRunsInBulk(sql, "bench_one", runs);
          await waitFor(`${runs} runs`, () => allCompleted(sql, "bench_one", runs));
          return {
            workers: count,
            tasksPerSecond: await taskRate(sql, "bench_one"),
            attemptsOk: await attemptsOk(sql, "bench_one"),
          };
        } finally {
          await Promise.all(workers.map((worker) => worker.stop()));
        }
      }),
    );
  }
  return points;
}

async function memory(server: Server) {
  return await scenario(server, async (sql, url) => {
    const worker = await startWorker("slow", url, { maxConcurrent: 1_000, batchSize: 100 });
    try {
      await waitForWorkers(sql, "bench_slow");
      const idle = await worker.memory();
      await startRunsInBulk(sql, "bench_slow", 1_000);
      await waitFor("1,000 tasks in flight", async () => {
        const [row] = await sql`
          select count(*)::int as n from pgflow.step_tasks
          where flow_slug = 'bench_slow' and status = 'started'`;
        return row.n >= 1_000;
      });
      await waitFor("1,000 slow runs", () => allCompleted(sql, "bench_slow", 1_000));
      return { idleRssMb: idle.rssMb, peakRssMb: (await worker.memory()).peakRssMb };
    } finally {
      await worker.stop();
    }
  });
}

export interface WorkerBenchOptions {
  oneStepRuns: number;
  diamondRuns: number;
  latencyRuns: number;
}

export async function runWorkerBench(server: Server, o: WorkerBenchOptions) {
  const log = (what: string) => console.error(`[bench] ${what}`);
  log("diamond latency, LISTEN");
  const listen = await diamondLatencies(server, DEFAULT_OPTIONS, o.latencyRuns);
  log("diamond latency, no LISTEN (as behind a transaction pooler)");
  const noListen = await diamondLatencies(server, { listen: false }, o.latencyRuns);
  const settings: Record<string, unknown> = {};
  for (const s of ["default", "tuned"] as const) {
    log(`one-step throughput, ${s} settings`);
    const oneStep = await medianThroughput(server, "oneStep", "bench_one", o.oneStepRuns, s, true);
    log(`diamond throughput, ${s} settings`);
    const diamond = await medianThroughput(server, "diamond", "bench_diamond", o.diamondRuns, s);
    log(`map 1,000 and 10,000, ${s} settings`);
    const map = await mapTimes(server, s);
    settings[s] = { oneStep, diamond, map };
  }
  log("scale-out 1, 2, 4 workers");
  const scale = await scaleOut(server, o.oneStepRuns);
  log("memory with 1,000 tasks in flight");
  const mem = await memory(server);
  return {
    latency: { listen, noListen },
    settings: settings as Record<Settings, {
      oneStep: Throughput;
      diamond: Throughput;
      map: MapTimes;
    }>,
    scaleOut: scale,
    memory: mem,
  };
}
