/**
 * The fault suite's CI slice (issue 9): each scenario of bench/faults at 30 runs, on servers
 * (and a pgbouncer) the test starts itself. Asserts the zeros: no run lost or stuck, no wrong
 * output, no message left, one archived message per task, and handler re-executions only of
 * attempts that were in flight at the fault. The recovery times are printed here and checked
 * against their bound by `deno task faults` (a speed target, not a test assertion).
 */
import assert from "node:assert/strict";
import { PGBOUNCER_MISSING, runScenario } from "../bench/faults/harness.ts";
import type { FaultReport } from "../bench/faults/measure.ts";
import { type ScenarioName, SCENARIOS } from "../bench/faults/scenarios.ts";
import { findPgbouncer } from "./_support/pgbouncer.ts";

const SIZE = { runs: 30, deadlineMs: 60_000 };
const hasPgbouncer = findPgbouncer() !== undefined;
if (!hasPgbouncer) {
  console.warn(`faults_test: the pooler scenario is skipped: ${PGBOUNCER_MISSING}`);
}

function zeros(report: FaultReport) {
  return {
    lost: report.lost,
    stuck: report.stuck,
    wrongOutputs: report.wrongOutputs,
    messagesLeft: report.messagesLeft,
    archiveMatchesTasks: report.archiveMatchesTasks,
    reExecutionsNotInFlight: report.reExecutionsNotInFlight,
    completedWithoutExecution: report.completedWithoutExecution,
  };
}

const ZEROS = {
  lost: 0,
  stuck: 0,
  wrongOutputs: 0,
  messagesLeft: 0,
  archiveMatchesTasks: true,
  reExecutionsNotInFlight: 0,
  completedWithoutExecution: 0,
};

for (const name of Object.keys(SCENARIOS) as ScenarioName[]) {
  const spec = SCENARIOS[name];
  Deno.test({
    name: `fault suite: ${spec.name}, ${SIZE.runs} runs: nothing lost, stuck, wrong or left`,
    ignore: spec.pooler && !hasPgbouncer,
    // postgres.js keeps timers for idle connections; every pool is ended by the harness.
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const report = await runScenario(spec, SIZE);
      console.log(
        `${spec.name}: ${report.completed}/${report.runs} runs, ${report.inFlightAtFault} in ` +
          `flight at the fault, ${report.reExecutions} re-executions; recovery ` +
          `${(report.recoveryMs / 1000).toFixed(2)} s (bound ${
            report.recoveryBoundMs / 1000
          } s), ` +
          `worker idle mode ${report.idleMode}`,
      );
      assert.deepEqual(zeros(report), ZEROS, JSON.stringify(report.notInFlightDetails));
      assert.equal(report.completed, SIZE.runs);
    },
  });
}
