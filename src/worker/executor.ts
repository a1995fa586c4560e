/**
 * Runs handlers: at most `maxConcurrent` in flight, each raced against its timeout, each
 * reported before its slot is given back. Slots are counted from the moment a message is read
 * (the poller reserves them), so the worker never holds more work than it may run.
 *
 * Shutdown: `drain(graceMs)` waits for what is in flight; after the grace time it aborts the
 * remaining handlers' signals and lets them report as failed, so nothing waits for the
 * visibility timeout when it does not have to.
 */
import { RunCancelledError, TaskTimeoutError, WorkerShutdownError } from "./errors.ts";

/** How a handler ended. */
export type Outcome =
  | { ok: true; output: unknown; durationMs: number }
  | {
    ok: false;
    error: unknown;
    /**
     * `error`: it threw; `timeout`: its time ran out; `shutdown`: the worker gave up on it;
     * `cancelled`: its run was cancelled (`job.signal`).
     */
    cause: "error" | "timeout" | "shutdown" | "cancelled";
    durationMs: number;
  };

export interface Job {
  /** What the timeout message calls it, e.g. `step "fetch"`. */
  what: string;
  timeoutMs: number;
  /** Calls the handler; `signal` aborts at the timeout, on `job.signal`, or when the worker gives up. */
  run(signal: AbortSignal): unknown;
  /** Aborts the handler from outside with this signal's reason (e.g. its run was cancelled). */
  signal?: AbortSignal;
  /**
   * Sends the outcome to the database; the slot is freed after it settles, unless the report
   * handed the slot over to a task it claimed (`"slot-handed-over"`), which now runs in it.
   */
  report(outcome: Outcome): Promise<ReportEnd>;
  /** Called if the handler settles after its outcome was already decided (timeout/shutdown). */
  late?(result: { ok: boolean; durationMs: number }): void;
}

/** How a report ended for its slot (see `Job.report`). */
export type ReportEnd = void | "slot-handed-over";

/** setTimeout's limit; longer timeouts are clamped to it (~24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

export class Executor {
  readonly capacity: number;
  #used = 0;
  #running = 0;
  readonly #tracked = new Set<Promise<unknown>>();
  readonly #giveUp = new AbortController();
  readonly #onFree: () => void;
  readonly #onTaskDone: (ok: boolean) => void;
  readonly #onError: (error: unknown) => void;
  #graceMs = 0;

  constructor(
    capacity: number,
    hooks: {
      /** A slot was freed (a job finished, or a reservation was given back). */
      onFree?: () => void;
      /** A job finished and reported (after its slot was freed); `ok` is the handler's outcome. */
      onTaskDone?: (ok: boolean) => void;
      /** A job's bookkeeping threw (a bug: reports catch their own errors). */
      onError?: (error: unknown) => void;
    } = {},
  ) {
    this.capacity = capacity;
    this.#onFree = hooks.onFree ?? (() => {});
    this.#onTaskDone = hooks.onTaskDone ?? (() => {});
    this.#onError = hooks.onError ?? (() => {});
  }

  /** Slots neither reserved nor running. */
  get free(): number {
    return this.capacity - this.#used;
  }

  /** Handlers running or reporting now. */
  get running(): number {
    return this.#running;
  }

  /** Takes `n` slots for messages about to be read; give back what is not used. */
  reserve(n: number): void {
    if (n > this.free) {
      throw new Error(`cannot reserve ${n} slots, only ${this.free} of ${this.capacity} free`);
    }
    this.#used += n;
  }

  /** Gives back `n` reserved slots. */
  release(n: number): void {
    if (n <= 0) return;
    this.#used -= n;
    this.#onFree();
  }

  /** Keeps `promise` (e.g. a phase-2 call) in what `drain` waits for. */
  track<T>(promise: Promise<T>): Promise<T> {
    this.#tracked.add(promise);
    const forget = () => this.#tracked.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /**
   * Runs a job in one reserved slot (or one a report handed over); the slot is released once
   * the job has reported, unless its report handed the slot to a task it claimed.
   */
  execute(job: Job): void {
    this.#running++;
    this.track(
      this.#runJob(job).catch((error) => {
        this.#onError(error);
        return { ok: false, handedOver: false };
      }).then(({ ok, handedOver }) => {
        this.#running--;
        if (!handedOver) this.release(1);
        this.#onTaskDone(ok);
      }),
    );
  }

  /** Runs and reports a job: whether the handler succeeded and whether its slot was handed over. */
  async #runJob(job: Job): Promise<{ ok: boolean; handedOver: boolean }> {
    const controller = new AbortController();
    const giveUp = () => controller.abort(new WorkerShutdownError(this.#graceMs));
    if (this.#giveUp.signal.aborted) giveUp();
    else this.#giveUp.signal.addEventListener("abort", giveUp, { once: true });
    const fromOutside = () => controller.abort(job.signal!.reason);
    if (job.signal?.aborted) fromOutside();
    else job.signal?.addEventListener("abort", fromOutside, { once: true });
    const timeoutMs = Math.min(job.timeoutMs, MAX_TIMER_MS);
    const timer = setTimeout(
      () => controller.abort(new TaskTimeoutError(job.what, timeoutMs)),
      timeoutMs,
    );
    const started = performance.now();
    let decided = false;
    let outcome: Outcome;
    try {
      const handled = Promise.resolve().then(() => job.run(controller.signal));
      if (job.late) {
        const late = job.late;
        handled.then(
          () => decided && late({ ok: true, durationMs: performance.now() - started }),
          () => decided && late({ ok: false, durationMs: performance.now() - started }),
        );
      }
      const output = await Promise.race([handled, whenAborted(controller.signal)]);
      outcome = { ok: true, output, durationMs: performance.now() - started };
    } catch (error) {
      // A handler that honours the signal throws its own AbortError: the cause is the signal's.
      const reason = controller.signal.aborted ? controller.signal.reason : undefined;
      const cause = reason instanceof TaskTimeoutError
        ? "timeout"
        : reason instanceof WorkerShutdownError
        ? "shutdown"
        : reason instanceof RunCancelledError
        ? "cancelled"
        : "error";
      outcome = {
        ok: false,
        error: cause === "error" ? error : reason,
        cause,
        durationMs: performance.now() - started,
      };
    } finally {
      decided = true;
      clearTimeout(timer);
      this.#giveUp.signal.removeEventListener("abort", giveUp);
      job.signal?.removeEventListener("abort", fromOutside);
    }
    const end = await job.report(outcome);
    return { ok: outcome.ok, handedOver: end === "slot-handed-over" };
  }

  /**
   * Waits for in-flight work; after `graceMs` aborts the handlers still running (they report
   * as failed) and waits up to `reportMs` more for those reports. Returns how many handlers
   * were given up on.
   */
  async drain(graceMs: number, reportMs = 5_000): Promise<number> {
    this.#graceMs = graceMs;
    if (await this.#settle(graceMs)) return 0;
    const abandoned = this.#running;
    this.#giveUp.abort();
    await this.#settle(reportMs);
    return abandoned;
  }

  /** `true` once nothing is tracked; `false` if `ms` pass first. */
  async #settle(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.#tracked.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        Promise.allSettled([...this.#tracked]).then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), left)),
      ]);
      clearTimeout(timer);
      if (timedOut) return this.#tracked.size === 0;
    }
    return true;
  }
}

function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}
