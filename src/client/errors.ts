/** Errors of the client: each names the run and what was expected. */

/** `waitFor` did not see the status in time. */
export class RunWaitTimeoutError extends Error {
  constructor(
    readonly runId: string,
    readonly wanted: string,
    readonly current: string,
    readonly timeoutMs: number,
  ) {
    super(
      `run ${runId} did not become ${wanted} within ${timeoutMs} ms (it is ${current})`,
    );
    this.name = "RunWaitTimeoutError";
  }
}

/** `waitFor(x)` saw the run end in another status, which it will never leave. */
export class RunEndedError extends Error {
  constructor(
    readonly runId: string,
    readonly wanted: string,
    readonly status: string,
    readonly failedStep?: string,
    readonly errorMessage?: string,
  ) {
    super(
      `run ${runId} ${status} instead of becoming ${wanted}` +
        (failedStep ? ` (step ${failedStep}: ${errorMessage ?? "no message"})` : ""),
    );
    this.name = "RunEndedError";
  }
}

/** The run handle was disposed (or its client closed) while something waited on it. */
export class RunDisposedError extends Error {
  constructor(readonly runId: string) {
    super(`run ${runId}: the handle was disposed while waiting`);
    this.name = "RunDisposedError";
  }
}
