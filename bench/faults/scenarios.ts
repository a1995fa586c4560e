/** The fault scenarios: each a fault to inject into a busy worker (bench/faults/harness.ts). */
import type { FaultTimes } from "./measure.ts";
import type { FaultContext, ScenarioSpec } from "./harness.ts";

/** The worker process is killed with SIGKILL; a new one starts at once. */
export const killWorker: ScenarioSpec = {
  name: "worker killed (SIGKILL)",
  inject: killAndReplace,
};

/** The database stops (pg_ctl -m fast: connections closed) and starts again at once. */
export const restartDatabase: ScenarioSpec = {
  name: "database fast restart",
  inject: (context) => databaseDown(context, "fast", 0),
};

/** The database crashes (pg_ctl -m immediate) and stays down for 5 s. */
export const databaseOutage: ScenarioSpec = {
  name: "database down 5 s (immediate stop)",
  inject: (context) => databaseDown(context, "immediate", 5_000),
};

/** The worker goes through a transaction-mode pgbouncer; killed with SIGKILL mid-run. */
export const behindPooler: ScenarioSpec = {
  name: "behind pgbouncer (transaction mode), worker killed",
  pooler: true,
  inject: killAndReplace,
};

/** No fault: the yardstick for what a fault costs in time (main.ts runs it first). */
export const baseline: ScenarioSpec = {
  name: "no fault (baseline)",
  inject() {
    const now = Date.now();
    return Promise.resolve({ faultAt: now, downAt: now, faultEnd: now });
  },
};

export const SCENARIOS = { killWorker, restartDatabase, databaseOutage, behindPooler };
export type ScenarioName = keyof typeof SCENARIOS;

async function killAndReplace(context: FaultContext): Promise<FaultTimes> {
  const faultAt = Date.now();
  await context.worker.kill();
  const faultEnd = Date.now();
  const downAt = faultEnd;
  // Nothing changes a task between the kill and the next worker: this is exactly what was
  // in flight.
  await context.snapshot();
  await context.replaceWorker();
  return { faultAt, downAt, faultEnd };
}

async function databaseDown(
  context: FaultContext,
  mode: "fast" | "immediate",
  downMs: number,
): Promise<FaultTimes> {
  await context.snapshot();
  const faultAt = Date.now();
  await context.server.halt(mode);
  const downAt = Date.now();
  // The outage is the fault itself: a database being down is real time, not engine time.
  if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
  await context.server.resume();
  const faultEnd = Date.now();
  // Tasks started between the first look and the stop, still unfinished.
  await context.snapshot(new Date(downAt));
  return { faultAt, downAt, faultEnd };
}
