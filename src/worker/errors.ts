/** The errors the worker raises itself: bad options, bad lifecycle transitions, flow mismatches. */

/** An option given to `createWorker` is invalid; `option` names it. */
export class WorkerOptionError extends TypeError {
  readonly option: string;
  constructor(option: string, problem: string) {
    super(`createWorker: option ${option} ${problem}`);
    this.name = "WorkerOptionError";
    this.option = option;
  }
}

/** A lifecycle transition that is not allowed (e.g. starting a stopped worker). */
export class WorkerStateError extends Error {
  readonly from: string;
  readonly to: string;
  constructor(workerId: string, from: string, to: string, allowed: readonly string[]) {
    super(
      `worker ${workerId} cannot go from "${from}" to "${to}" ` +
        `(allowed from "${from}": ${allowed.length ? allowed.join(", ") : "nothing, it is final"})`,
    );
    this.name = "WorkerStateError";
    this.from = from;
    this.to = to;
  }
}

/** The flow in the database differs from the code; the worker refuses to start. */
export class FlowMismatchError extends Error {
  readonly flowSlug: string;
  readonly differences: readonly string[];
  constructor(flowSlug: string, differences: readonly string[]) {
    super(
      `flow "${flowSlug}" in the database differs from the code, so the worker will not start:\n` +
        differences.map((difference) => `  - ${difference}`).join("\n") +
        `\nDeploy a migration with the new definition (a new flow slug keeps old runs intact), ` +
        `or set the option recreateOnMismatch: true (pgflow: compilation: { allowDataLoss: true }) to delete the flow with all its runs and ` +
        `create it again (development only).`,
    );
    this.name = "FlowMismatchError";
    this.flowSlug = flowSlug;
    this.differences = differences;
  }
}

/** Why a handler's signal was aborted because the task ran past its timeout. */
export class TaskTimeoutError extends Error {
  readonly timeoutMs: number;
  constructor(what: string, timeoutMs: number) {
    super(`timeout: ${what} did not finish within ${formatSeconds(timeoutMs)}; it was aborted`);
    this.name = "TaskTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** Why a handler's signal was aborted because the worker gave up on it while shutting down. */
export class WorkerShutdownError extends Error {
  constructor(graceMs: number) {
    super(
      `shutdown: the worker stopped before the handler finished ` +
        `(shutdownGraceMs of ${graceMs} ms passed); it was aborted`,
    );
    this.name = "WorkerShutdownError";
  }
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Why a handler's signal was aborted because its run was cancelled (`pgflow.cancel_run`). */
export class RunCancelledError extends Error {
  readonly runId: string;
  constructor(runId: string) {
    super(`cancelled: run ${runId} was cancelled; the handler was aborted`);
    this.name = "RunCancelledError";
    this.runId = runId;
  }
}
