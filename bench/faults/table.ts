/** The fault suite's table: one column per scenario, one row per figure. */
import type { FaultReport } from "./measure.ts";

const ms = (value: number) => Number.isFinite(value) ? `${(value / 1000).toFixed(2)} s` : "never";

const ROWS: [string, (report: FaultReport) => string][] = [
  ["runs completed / lost / stuck", (r) => `${r.completed} / ${r.lost} / ${r.stuck}`],
  ["wrong outputs", (r) => String(r.wrongOutputs)],
  ["messages left / archived (tasks)", (r) => `${r.messagesLeft} / ${r.archived} (${r.tasks})`],
  ["tasks in flight at the fault", (r) => String(r.inFlightAtFault)],
  ["handler executions (tasks)", (r) => `${r.executions} (${r.tasks})`],
  [
    "re-executions (tasks), not in flight",
    (r) => `${r.reExecutions} (${r.reExecutedTasks}), ${r.reExecutionsNotInFlight}`,
  ],
  ["extra attempts counted by the engine", (r) => String(r.extraAttempts)],
  ["fault duration", (r) => ms(r.faultMs)],
  ["fault end -> first task completed", (r) => ms(r.faultEndToFirstCompletionMs)],
  ["fault end -> in-flight tasks picked up", (r) => ms(r.faultEndToInFlightPickedUpMs)],
  ["recovery (bound)", (r) => `${ms(r.recoveryMs)} (${ms(r.recoveryBoundMs)})`],
  ["fault -> all runs complete", (r) => ms(r.faultToAllRunsCompleteMs)],
  ["first run started -> all runs complete", (r) => ms(r.allRunsMs)],
  [
    "worker warn/error lines after the fault",
    (r) => String(Object.values(r.failureLogLines).reduce((a, b) => a + b, 0)),
  ],
  ["worker idle mode", (r) => r.idleMode],
];

export function formatReports(reports: FaultReport[]): string {
  const header = ["", ...reports.map((r) => r.scenario)];
  const body = ROWS.map(([label, cell]) => [label, ...reports.map(cell)]);
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const lines = all.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  "));
  const logs = reports.map((r) =>
    `${r.scenario}: ${
      Object.entries(r.failureLogLines).map(([msg, n]) => `${n} x "${msg}"`).join(", ") || "none"
    }`
  );
  return [...lines, "", "worker warnings and errors after the fault:", ...logs].join("\n");
}
