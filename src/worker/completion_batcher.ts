/**
 * Group commit for completions, and claiming with them. A completion is sent at once while
 * fewer than `maxInFlight` completion statements are running and none of them reports on its
 * run (an idle worker adds no latency); otherwise it waits for the next free statement and goes
 * with everything else that queued meanwhile, in one statement and one transaction. Under load
 * this turns many small commits into a few larger ones.
 *
 * A batch may also claim the worker's next tasks in the same transaction
 * (`complete_tasks_and_claim`): the tasks it made ready, and any other visible ones. The
 * reported tasks' own slots go straight to the tasks claimed (the slot is handed over rather
 * than freed and read into again), plus any free slots the claimer reserves. A busy worker
 * thus makes one round trip per batch: report what finished, get what comes next.
 */
import type { Sql } from "../db/connect.ts";
import {
  completeTasks,
  completeTasksAndClaim,
  type CompletionResult,
  type StartedTask,
  type TaskCompletion,
} from "../db/tasks.ts";
import type { Logger } from "./logger.ts";
import { withReportRetries } from "./report_retry.ts";

/**
 * Runs `fn` once the current turn of the event loop is done: setImmediate (Deno 2, Node, the
 * Edge Runtime), else setTimeout, which may wait a millisecond or more.
 */
const setImmediateOfRuntime = (globalThis as { setImmediate?: (fn: () => void) => unknown })
  .setImmediate;
const nextTurn: (fn: () => void) => void = setImmediateOfRuntime
  ? (fn) => void setImmediateOfRuntime(fn)
  : (fn) => void setTimeout(fn, 0);

/** How a batch of completions claims further tasks for the worker. */
export interface Claimer {
  flowSlug: string;
  workerId: string;
  /** Seconds the claimed messages stay hidden until start_tasks sets their timeout. */
  vt: number;
  /**
   * Decides whether reporting `completions` should claim, and reserves free slots for it
   * beyond the reported tasks' own. Returns how many it reserved, or `null`: do not claim.
   */
  take(completions: readonly TaskCompletion[]): number | null;
  /** Runs claimed tasks, each in a reported task's slot or a reserved one; `asked` was the qty. */
  run(claimed: StartedTask[], asked: number): void;
  /** Gives back reserved slots that no claimed task took. */
  release(slots: number): void;
}

/** A report's outcome. */
export interface Reported {
  result: CompletionResult;
  /** The task's slot now runs a claimed task: the caller must not free it. */
  slotHandedOver: boolean;
}

interface Pending {
  completion: TaskCompletion;
  resolve(reported: Reported): void;
  reject(error: unknown): void;
}

export class CompletionBatcher {
  readonly #sql: Sql;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #inFlight = 0;
  #queue: Pending[] = [];
  #flushScheduled = false;
  /** Runs the statements in flight report on. */
  readonly #runsInFlight = new Set<string>();

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
  complete(completion: TaskCompletion): Promise<Reported> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ completion, resolve, reject });
      this.#scheduleFlush();
    });
  }

  /**
   * Flushes once the current turn of the event loop is done (setImmediate: microseconds, where
   * setTimeout(0) waits a millisecond or more), so that completions of tasks that finished
   * together, e.g. the branches of a DAG level claimed in one statement, go in one batch.
   */
  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    nextTurn(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      // Shared among the free statements, so that they overlap rather than one carrying all.
      const share = Math.ceil(this.#queue.length / (this.#maxInFlight - this.#inFlight));
      const batch = this.#takeBatch(share);
      if (batch.length === 0) return;
      const runs = new Set(batch.map((pending) => pending.completion.runId));
      for (const run of runs) this.#runsInFlight.add(run);
      this.#inFlight++;
      this.#send(batch).finally(() => {
        for (const run of runs) this.#runsInFlight.delete(run);
        this.#inFlight--;
        this.#flush();
      });
    }
  }

  /**
   * Queued completions, in order, of runs no statement in flight reports on: about `share` of
   * them, but all of a run's (up to `maxBatch`). A second statement on a run would only wait
   * for the first one's lock on it.
   */
  #takeBatch(share: number): Pending[] {
    const batch: Pending[] = [];
    const runs = new Set<string>();
    const rest: Pending[] = [];
    for (const pending of this.#queue) {
      const run = pending.completion.runId;
      const fits = batch.length < this.#maxBatch && !this.#runsInFlight.has(run) &&
        (runs.has(run) || batch.length < share);
      if (fits) {
        batch.push(pending);
        runs.add(run);
      } else {
        rest.push(pending);
      }
    }
    this.#queue = rest;
    return batch;
  }

  async #send(batch: Pending[]): Promise<void> {
    if (this.#claimer && await this.#sendAndClaim(batch, this.#claimer)) return;
    const completions = batch.map((pending) => pending.completion);
    try {
      const results = await this.#retried(
        () => completeTasks(this.#sql, completions),
        completions,
      );
      batch.forEach((pending, index) =>
        pending.resolve({ result: results[index], slotHandedOver: false })
      );
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
          pending.resolve({ result, slotHandedOver: false });
        } catch (single) {
          pending.reject(single);
        }
      }));
    }
  }

  /** Sends a batch that also claims tasks; false when it should not claim (or could not). */
  async #sendAndClaim(batch: Pending[], claimer: Claimer): Promise<boolean> {
    const completions = batch.map((pending) => pending.completion);
    const reserved = claimer.take(completions);
    if (reserved === null) return false;
    const qty = batch.length + reserved;
    let outcome: { results: CompletionResult[]; claimed: StartedTask[] };
    try {
      // Not retried on a lost connection: a retry could not return what the first call claimed
      // (those tasks would wait for recovery); the plain path is retried instead.
      outcome = await completeTasksAndClaim(this.#sql, completions, {
        flowSlug: claimer.flowSlug,
        workerId: claimer.workerId,
        vt: claimer.vt,
        qty,
      });
    } catch {
      claimer.release(reserved);
      return false;
    }
    // Claimed tasks fill the reported tasks' slots first, then the reserved ones.
    const handedOver = Math.min(outcome.claimed.length, batch.length);
    claimer.release(reserved - (outcome.claimed.length - handedOver));
    claimer.run(outcome.claimed, qty);
    batch.forEach((pending, index) =>
      pending.resolve({ result: outcome.results[index], slotHandedOver: index < handedOver })
    );
    return true;
  }
}
