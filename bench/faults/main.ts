/**
 * `deno task faults [scenario...]`: every fault scenario at full size (300 runs of the fan-out
 * flow each), one after another, each on its own PostgreSQL; prints a table, writes
 * bench/results/faults.json, and exits 1 when any scenario missed a zero or its recovery bound.
 * FAULT_RUNS=<n> sets another size.
 */
import { exitOnSetupError } from "../../src/dev/postgres_setup_error.ts";
import { PGBOUNCER_MISSING, runScenario } from "./harness.ts";
import { type FaultReport, problems } from "./measure.ts";
import { findPgbouncer } from "../../tests/_support/pgbouncer.ts";
import { baseline, type ScenarioName, SCENARIOS } from "./scenarios.ts";
import { formatReports } from "./table.ts";

const runs = Number(Deno.env.get("FAULT_RUNS") ?? 300);
const chosen = (Deno.args.length ? Deno.args : Object.keys(SCENARIOS)) as ScenarioName[];
for (const name of chosen) {
  if (!(name in SCENARIOS)) {
    console.error(`unknown scenario ${name}; one of ${Object.keys(SCENARIOS).join(", ")}`);
    Deno.exit(2);
  }
}

const reports: FaultReport[] = [];
const skipped: string[] = [];
// The baseline (no fault) first, when every scenario runs: what the faults cost is against it.
const specs = Deno.args.length ? chosen.map((name) => SCENARIOS[name]) : [
  baseline,
  ...Object.values(SCENARIOS),
];
for (const spec of specs) {
  if (spec.pooler && !findPgbouncer()) {
    const reason = `skipped "${spec.name}": ${PGBOUNCER_MISSING}`;
    console.warn(reason);
    skipped.push(reason);
    continue;
  }
  console.log(`${spec.name}: ${runs} runs ...`);
  const report = await exitOnSetupError(() =>
    runScenario(spec, { runs, deadlineMs: 120_000 + runs * 200 })
  );
  reports.push(report);
  for (const problem of problems(report)) console.warn(`  ${problem}`);
  if (Deno.env.get("FAULT_DEBUG")) {
    console.warn(JSON.stringify(report.lastPickedUp));
    for (const line of report.failureLogSamples) console.warn(JSON.stringify(line));
  }
  if (report.notInFlightDetails.length) {
    console.warn(JSON.stringify(report.notInFlightDetails, null, 2));
  }
}

console.log(`\nFault suite (${runs} runs each, embedded PostgreSQL 17, durable, 2 cores)`);
console.log(formatReports(reports));
const failures = reports.flatMap((report) =>
  problems(report).map((problem) => `${report.scenario}: ${problem}`)
);
await Deno.mkdir(new URL("../results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("../results/faults.json", import.meta.url),
  JSON.stringify({ runs, reports, skipped, failures }, null, 2),
);
if (failures.length) {
  console.error(`\n${failures.length} problem(s):\n${failures.join("\n")}`);
  Deno.exit(1);
}
console.log(
  "\nevery scenario: 0 runs lost or stuck, 0 wrong outputs, 0 messages left, " +
    "re-executions only of attempts in flight, recovery within its bound",
);
Deno.exit(0);
