/**
 * `deno task bench`: starts its own PostgreSQL 17 (default durability), runs
 * the SQL core and worker benchmarks, prints a table and writes
 * bench/results/bench.json. Targets are checked here, never in tests.
 */
import { startThrowawayPostgres } from "../src/dev/embedded_postgres.ts";
import { exitOnSetupError } from "../src/dev/postgres_setup_error.ts";
import { createTestDb } from "../tests/_support/db.ts";
import { runCoreBench } from "./core_bench.ts";
import { runWorkerBench } from "./worker_bench.ts";

const server = await exitOnSetupError(() => startThrowawayPostgres("bench", { durable: true }));
// The test harness builds its template databases on this server.
Deno.env.set("EDGEFLOW_TEST_DATABASE_URL", server.url);

try {
  const core = await runCoreBench();
  const worker = await runWorkerBench({
    url: server.url,
    async createDatabase() {
      const db = await createTestDb();
      return { url: db.url, drop: db.drop };
    },
  });

  const ratio = worker.oneStepTasksPerSecond / worker.commitRate;
  const rows: [string, string, string, boolean][] = [
    ["(a) commit rate, 1-row insert txns/s, 8 connections", worker.commitRate.toFixed(0), "", true],
    [
      "(b) one-step runs, tasks/s (5,000 runs, one worker)",
      worker.oneStepTasksPerSecond.toFixed(0),
      `ratio to (a) ${ratio.toFixed(2)} (target >= 0.50)`,
      ratio >= 0.5,
    ],
    [
      "(c) diamond, tasks/s (1,000 runs)",
      worker.diamondTasksPerSecond.toFixed(0),
      `ratio to (a) ${(worker.diamondTasksPerSecond / worker.commitRate).toFixed(2)}`,
      worker.diamondTasksPerSecond / worker.commitRate >= 0.5,
    ],
    [
      "(c) diamond latency p50, ms (start_flow -> completed)",
      worker.diamondLatencyP50Ms.toFixed(1),
      "target <= 10",
      worker.diamondLatencyP50Ms <= 10,
    ],
    [
      "(c) diamond latency p99, ms",
      worker.diamondLatencyP99Ms.toFixed(1),
      "target <= 50",
      worker.diamondLatencyP99Ms <= 50,
    ],
    [
      "(d) map over 1,000 elements, ms",
      worker.map1000Ms.toFixed(0),
      "target <= 500",
      worker.map1000Ms <= 500,
    ],
    [
      "(d) map over 10,000 elements, ms",
      worker.map10000Ms.toFixed(0),
      `${(worker.map10000Ms / worker.map1000Ms).toFixed(1)} x the 1,000 map (target <= 10 x)`,
      worker.map10000Ms <= 10 * worker.map1000Ms,
    ],
    [
      "(e) worker peak RSS, MB, 1,000 tasks in flight",
      worker.peakRssMb.toFixed(0),
      `idle ${worker.idleRssMb.toFixed(0)} MB; target < 100`,
      worker.peakRssMb < 100,
    ],
  ];
  console.log("\nWorker benchmark (embedded PostgreSQL 17, default durability, 2 cores)");
  console.log(formatTable(rows));
  await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
  await Deno.writeTextFile(
    new URL("./results/bench.json", import.meta.url),
    JSON.stringify({ core, worker }, null, 2),
  );
} finally {
  await server.stop();
}
Deno.exit(0);

function formatTable(rows: [string, string, string, boolean][]): string {
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((row) => String(row[i]).length)));
  return rows.map(([name, value, note, met]) =>
    `${name.padEnd(widths[0])}  ${value.padStart(widths[1])}  ${note.padEnd(widths[2])}  ${
      note.includes("target") ? (met ? "met" : "NOT MET") : ""
    }`
  ).join("\n");
}
