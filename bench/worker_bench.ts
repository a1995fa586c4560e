/**
 * Worker benchmark (issue 4, point 8): throughput and latency of ONE worker
 * process against the server's own commit rate, map completion time, and the
 * worker's peak memory. Each scenario gets a fresh database and a fresh
 * worker process (bench/worker_process.ts).
 */
import { connect, type Sql } from "../src/db/connect.ts";
import { measureCommitRate } from "./commit_rate.ts";
import type { BenchFlowName } from "./flows.ts";
import { freePort } from "../src/dev/postgres_server.ts";
import { eventually } from "../tests/_support/eventually.ts";

export interface Server {
  url: string;
  /** A fresh database with pgmq and the core. */
  createDatabase(): Promise<{ url: string; drop(): Promise<void> }>;
}

/** One worker tuned for many short tasks: 100 handlers in flight, reads of 50. */
const THROUGHPUT_OPTIONS = { maxConcurrent: 100, batchSize: 50, maxPgConnections: 4 };

interface WorkerProcess {
  pid: number;
  peakRssMb(): Promise<number>;
  stop(): Promise<void>;
}

async function startWorker(
  flow: BenchFlowName,
  dbUrl: string,
  options: Record<string, unknown> = {},
): Promise<WorkerProcess> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./worker_process.ts", import.meta.url).pathname,
      flow,
      String(port),
    ],
    env: {
      EDGE_WORKER_DB_URL: dbUrl,
      BENCH_WORKER_OPTIONS: JSON.stringify({ logLevel: "warn", ...options }),
    },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // The first request boots the worker, as on Supabase.
  const deadline = Date.now() + 20_000;
  while (true) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`, { method: "POST" });
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
    pid: child.pid,
    async peakRssMb() {
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      return kb / 1024;
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

async function waitForWorker(sql: Sql, flow: string) {
  await waitFor(`a registered worker for ${flow}`, async () => {
    const [row] = await sql`
      select count(*)::int as n from pgflow.workers where queue_name = ${flow} and stopped_at is null`;
    return row.n > 0;
  });
}

/** Tasks per second between the first task start and the last task completion. */
async function taskRate(
  sql: Sql,
  flow: string,
): Promise<{ tasks: number; seconds: number; rate: number }> {
  const [row] = await sql`
    select count(*)::int as tasks,
           extract(epoch from max(completed_at) - min(started_at))::float8 as seconds
    from pgflow.step_tasks where flow_slug = ${flow} and status = 'completed'`;
  return { tasks: row.tasks, seconds: row.seconds, rate: row.tasks / row.seconds };
}

async function startRunsInBulk(sql: Sql, flow: string, count: number) {
  // 500 runs per transaction keeps each statement short.
  for (let done = 0; done < count; done += 500) {
    const n = Math.min(500, count - done);
    await sql`select pgflow.start_flow(${flow}, to_jsonb(i)) from generate_series(1, ${n}::int) i`;
  }
}

async function allCompleted(sql: Sql, flow: string, count: number): Promise<boolean> {
  const [row] = await sql`
    select count(*)::int as n from pgflow.runs where flow_slug = ${flow} and status = 'completed'`;
  return row.n >= count;
}

/** Starts a run and resolves with the ms until its run:completed event. */
async function timedRun(
  sql: Sql,
  listener: Sql,
  flow: string,
  input: unknown,
): Promise<number> {
  const runId = crypto.randomUUID();
  let done!: () => void;
  const completed = new Promise<void>((resolve) => (done = resolve));
  const subscription = await listener.listen(`pgflow:run:${runId}`, (payload) => {
    if (JSON.parse(payload).event === "run:completed") done();
  });
  const began = performance.now();
  await sql`select pgflow.start_flow(${flow}, (${
    JSON.stringify(input)
  }::text)::jsonb, ${runId}::uuid)`;
  await completed;
  const ms = performance.now() - began;
  await subscription.unlisten();
  return ms;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function runWorkerBench(server: Server) {
  const results: Record<string, number> = {};

  {
    const db = await server.createDatabase();
    results.commitRate = await measureCommitRate((max) => connect(db.url, { max }));
    await db.drop();
  }

  // (b) 5,000 one-step runs through one worker.
  {
    const db = await server.createDatabase();
    const sql = connect(db.url, { max: 4 });
    await sql.unsafe(
      `select pgflow.create_flow('bench_one'); select pgflow.add_step('bench_one', 'noop');`,
    );
    await startRunsInBulk(sql, "bench_one", 5_000);
    const worker = await startWorker("oneStep", db.url, THROUGHPUT_OPTIONS);
    await waitFor("5,000 one-step runs", () => allCompleted(sql, "bench_one", 5_000));
    const rate = await taskRate(sql, "bench_one");
    results.oneStepTasksPerSecond = rate.rate;
    await worker.stop();
    await sql.end();
    await db.drop();
  }

  // (c) diamond: single runs on an idle worker for latency (first, on a fresh queue), then
  // 1,000 runs for throughput.
  {
    const db = await server.createDatabase();
    const sql = connect(db.url, { max: 4 });
    const listener = connect(db.url, { max: 1 });
    const worker = await startWorker("diamond", db.url, THROUGHPUT_OPTIONS);
    await waitForWorker(sql, "bench_diamond");
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) await timedRun(sql, listener, "bench_diamond", i); // warm-up
    for (let i = 0; i < 200; i++) latencies.push(await timedRun(sql, listener, "bench_diamond", i));
    latencies.sort((a, b) => a - b);
    results.diamondLatencyP50Ms = percentile(latencies, 50);
    results.diamondLatencyP99Ms = percentile(latencies, 99);
    // Retention clears the latency runs, so the throughput below counts only its own tasks.
    await sql`select pgflow.prune_data_older_than('0 seconds')`;
    await startRunsInBulk(sql, "bench_diamond", 1_000);
    await waitFor("1,000 diamond runs", () => allCompleted(sql, "bench_diamond", 1_000));
    results.diamondTasksPerSecond = (await taskRate(sql, "bench_diamond")).rate;
    await worker.stop();
    await Promise.all([sql.end(), listener.end()]);
    await db.drop();
  }

  // (d) one map step over 1,000 and 10,000 elements, start to completed.
  {
    const db = await server.createDatabase();
    const sql = connect(db.url, { max: 4 });
    const listener = connect(db.url, { max: 1 });
    const worker = await startWorker("wideMap", db.url, THROUGHPUT_OPTIONS);
    await waitForWorker(sql, "bench_map");
    await timedRun(sql, listener, "bench_map", [1, 2, 3]); // warm-up
    for (const width of [1_000, 10_000]) {
      const input = Array.from({ length: width }, (_, i) => i);
      results[`map${width}Ms`] = await timedRun(sql, listener, "bench_map", input);
    }
    await worker.stop();
    await Promise.all([sql.end(), listener.end()]);
    await db.drop();
  }

  // (e) peak memory with 1,000 tasks in flight.
  {
    const db = await server.createDatabase();
    const sql = connect(db.url, { max: 4 });
    const worker = await startWorker("slow", db.url, { maxConcurrent: 1_000, batchSize: 100 });
    await waitForWorker(sql, "bench_slow");
    results.idleRssMb = await worker.peakRssMb();
    await startRunsInBulk(sql, "bench_slow", 1_000);
    await waitFor("1,000 tasks in flight", async () => {
      const [row] = await sql`
        select count(*)::int as n from pgflow.step_tasks where flow_slug = 'bench_slow' and status <> 'queued'`;
      return row.n >= 1_000;
    });
    await waitFor("1,000 slow runs", () => allCompleted(sql, "bench_slow", 1_000));
    results.peakRssMb = await worker.peakRssMb();
    await worker.stop();
    await sql.end();
    await db.drop();
  }
  return results;
}
