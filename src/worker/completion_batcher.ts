/**
 * Group commit for completions. A completion is sent at once while fewer than `maxInFlight`
 * completion statements are running (an idle worker adds no latency); otherwise it waits for
 * the next free statement and goes with everything else that queued meanwhile, in one
 * statement and one transaction (`completeTasks`). Under load this turns many small commits
 * into a few larger ones. A completion sent alone may also claim the next tasks in the same
 * transaction (`complete_task_and_claim`) when the worker has free slots: one round trip per
 * DAG level instead of a report, a wake-up and a read.
 */
import type { Sql } from "../db/connect.ts";
import {
  completeTaskAndClaim,
  completeTasks,
  type CompletionResult,
  type StartedTask,
  type TaskCompletion,
} from "../db/tasks.ts";
import type { Logger } from "./logger.ts";
import { withReportRetries } from "./report_retry.ts";

/** How a lone completion claims further tasks for the worker. */
export interface Claimer {
  workerId: string;
  /** Seconds the claimed messages stay hidden until start_tasks sets their timeout. */
  vt: number;
  /** Reserves slots for tasks to claim with this completion; returns how many (0: none). */
  take(completion: TaskCompletion): number;
  /** Hands over what was claimed with `taken` reserved slots (unused ones are given back). */
  give(claimed: StartedTask[], taken: number): void;
}

interface Pending {
  completion: TaskCompletion;
  resolve(result: CompletionResult): void;
  reject(error: unknown): void;
}

export class CompletionBatcher {
  readonly #sql: Sql;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #inFlight = 0;
  #queue: Pending[] = [];

  readonly #claimer: Claimer | undefined;
  readonly #log: Logger | undefined;
  readonly #signal: AbortSignal | undefined;

  constructor(
    sql: Sql,
    options: {
      maxInFlight: number;
      maxBatch: number;
      claimer?: Claimer;
      /** Where a report that has to wait for the database says so (once per episode). */
      log?: Logger;
      /** Ends the retries of reports that cannot get through (the worker closes its pool). */
      signal?: AbortSignal;
    },
  ) {
    this.#sql = sql;
    this.#maxInFlight = Math.max(1, options.maxInFlight);
    this.#maxBatch = Math.max(1, options.maxBatch);
    this.#claimer = options.claimer;
    this.#log = options.log;
    this.#signal = options.signal;
  }

  /** Retries a report until it gets through (see report_retry.ts). */
  #retried<T>(call: () => Promise<T>, completions: TaskCompletion[]): Promise<T> {
    const [one] = completions;
    return withReportRetries(
      call,
      this.#log && {
        log: this.#log,
        what: completions.length === 1
          ? "the completed task"
          : `${completions.length} completed tasks`,
        fields: completions.length === 1
          ? { step: one.stepSlug, run: one.runId, task: one.taskIndex }
          : undefined,
        signal: this.#signal,
      },
    );
  }

  /** Reports one completion; resolves with the task's status after it, rejects if it failed. */
  complete(completion: TaskCompletion): Promise<CompletionResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ completion, resolve, reject });
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      this.#inFlight++;
      this.#send(batch).finally(() => {
        this.#inFlight--;
        this.#flush();
      });
    }
  }

  async #send(batch: Pending[]): Promise<void> {
    if (batch.length === 1 && this.#claimer && await this.#sendAndClaim(batch[0], this.#claimer)) {
      return;
    }
    try {
      const completions = batch.map((pending) => pending.completion);
      const results = await this.#retried(
        () => completeTasks(this.#sql, completions),
        completions,
      );
      batch.forEach((pending, index) => pending.resolve(results[index]));
    } catch (error) {
      if (batch.length === 1) {
        batch[0].reject(error);
        return;
      }
      // One bad completion must not sink the others: the batch rolled back, so send each alone.
      await Promise.all(batch.map(async (pending) => {
        try {
          const [result] = await this.#retried(
            () => completeTasks(this.#sql, [pending.completion]),
            [pending.completion],
          );
          pending.resolve(result);
        } catch (single) {
          pending.reject(single);
        }
      }));
    }
  }

  /** Sends a lone completion that also claims tasks; false when there was no slot to claim for. */
  async #sendAndClaim(pending: Pending, claimer: Claimer): Promise<boolean> {
    const taken = claimer.take(pending.completion);
    if (taken === 0) return false;
    let outcome: { result: CompletionResult; claimed: StartedTask[] };
    try {
      // Not retried on a lost connection: a retry could not return what the first call claimed
      // (those tasks would wait for recovery); the plain path below is retried instead.
      outcome = await completeTaskAndClaim(this.#sql, {
        ...pending.completion,
        workerId: claimer.workerId,
        vt: claimer.vt,
        qty: taken,
      });
    } catch {
      claimer.give([], taken);
      return false;
    }
    claimer.give(outcome.claimed, taken);
    pending.resolve(outcome.result);
    return true;
  }
}
