/**
 * Cancelled runs: a flow worker keeps an AbortController per task in flight, by run. When a run
 * is cancelled (`pgflow.cancel_run`), the handlers of its tasks are aborted with a
 * RunCancelledError: at once when the notification on `pgflow:cancel:<flow>` arrives (LISTEN),
 * else at the next check, which runs every heartbeat interval and asks
 * `pgflow.cancelled_runs` about the runs in flight. Anyone may NOTIFY, so a notification only
 * triggers that check; nothing is aborted that the database does not say is cancelled.
 */
import type { Sql } from "../db/connect.ts";
import { cancelledRuns } from "../db/run_operations.ts";
import { CANCEL_CHANNEL_PREFIX } from "../limits.ts";
import { RunCancelledError } from "./errors.ts";
import { errorText } from "./failure_message.ts";
import type { Logger } from "./logger.ts";
import { Ticker } from "./ticker.ts";

export function cancelChannel(flowSlug: string): string {
  return CANCEL_CHANNEL_PREFIX + flowSlug;
}

export class RunCancellations {
  readonly #sql: Sql;
  readonly #log: Logger;
  readonly #ticker: Ticker;
  readonly #byRun = new Map<string, Set<AbortController>>();
  #checking: Promise<void> | undefined;
  #checkAgain = false;

  constructor(options: { sql: Sql; intervalMs: number; log: Logger }) {
    this.#sql = options.sql;
    this.#log = options.log;
    this.#ticker = new Ticker(options.intervalMs, () => this.check());
  }

  /** A signal that aborts if the run is cancelled; call `done` once the task has reported. */
  track(runId: string): { signal: AbortSignal; done(): void } {
    const controller = new AbortController();
    let tasks = this.#byRun.get(runId);
    if (!tasks) this.#byRun.set(runId, tasks = new Set());
    tasks.add(controller);
    return {
      signal: controller.signal,
      done: () => {
        tasks.delete(controller);
        if (tasks.size === 0 && this.#byRun.get(runId) === tasks) this.#byRun.delete(runId);
      },
    };
  }

  /** Asks the database which runs in flight are cancelled and aborts their handlers. */
  check(): Promise<void> {
    if (this.#checking) {
      // A cancellation may have committed after the running check read: look once more.
      this.#checkAgain = true;
      return this.#checking;
    }
    this.#checking = this.#checkLoop().finally(() => this.#checking = undefined);
    return this.#checking;
  }

  async #checkLoop(): Promise<void> {
    do {
      this.#checkAgain = false;
      const runIds = [...this.#byRun.keys()];
      if (runIds.length === 0) return;
      let cancelled: string[];
      try {
        cancelled = await cancelledRuns(this.#sql, runIds);
      } catch (error) {
        this.#log.warn("could not check for cancelled runs", { error: errorText(error) });
        return;
      }
      for (const runId of cancelled) this.#abort(runId);
    } while (this.#checkAgain);
  }

  #abort(runId: string): void {
    const tasks = this.#byRun.get(runId);
    if (!tasks) return;
    this.#log.info("run was cancelled: aborting its handlers", { run: runId, count: tasks.size });
    const reason = new RunCancelledError(runId);
    for (const controller of tasks) controller.abort(reason);
  }

  start(): void {
    this.#ticker.start();
  }

  async stop(): Promise<void> {
    await this.#ticker.stop();
    await this.#checking;
  }
}
