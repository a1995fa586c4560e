/**
 * A run handle: the run's last known state, kept fresh by its events. Events are triggers: after
 * each batch of them the handle re-reads the run (`get_run_with_states`), so its state never
 * depends on what an event carries (LISTEN payloads hold no inputs or outputs), then tells the
 * listeners, in the order the events arrived. Once the run has ended, and its listeners have
 * heard the event that ended it, the handle unsubscribes.
 */
import type { JsonRow, StepStateRow } from "../db/types.ts";
import { RunDisposedError, RunEndedError, RunWaitTimeoutError } from "./errors.ts";
import type {
  ClientTransport,
  InputOf,
  OutputOf,
  RunEvent,
  RunEventPattern,
  RunStatus,
  RunWithStates,
  StepSlugOf,
  StepState,
} from "./types.ts";

export type RunEventListener<F> = (event: RunEvent, run: FlowRun<F>) => void;

export interface WaitOptions {
  /** Reject with RunWaitTimeoutError after this long (default: wait as long as it takes). */
  timeoutMs?: number;
  /** Stop waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * How long a handle that saw its run end in a re-read (triggered by an earlier event of the same
 * transaction) stays subscribed for the run's own ending event, which the transport may deliver
 * a little later. Unsubscribing at once dropped it: `run:completed` listeners never ran.
 */
export const ENDING_EVENT_GRACE_MS = 10_000;

/** The events that end a run. */
const ENDING_EVENT = /^run:(completed|failed|cancelled)$/;

/** How `_fail_run` marks the steps it closes because another step failed. */
const CANCELLED = "cancelled: run failed at step ";

interface Waiter {
  check(): boolean;
  reject(error: unknown): void;
}

export class FlowRun<F = unknown> {
  readonly runId: string;
  readonly #transport: ClientTransport;
  readonly #onError: (error: unknown) => void;
  #state: RunWithStates;
  #unsubscribe: (() => Promise<void>) | undefined;
  #disposed = false;
  readonly #listeners = new Map<string, Set<RunEventListener<F>>>();
  readonly #waiters = new Set<Waiter>();
  #pending: RunEvent[] = [];
  #draining: Promise<void> | undefined;
  #releasing: Promise<void> | undefined;
  /** The run was still going when this handle first read it: its ending event will come. */
  readonly #endingEventDue: boolean;
  #endingEventHeard = false;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;

  /** @internal Built by `EdgeflowClient`; subscribe first, then read, so nothing is missed. */
  constructor(
    runId: string,
    transport: ClientTransport,
    state: RunWithStates,
    onError: (error: unknown) => void,
  ) {
    this.runId = runId;
    this.#transport = transport;
    this.#state = state;
    this.#onError = onError;
    this.#endingEventDue = state.run.status === "started";
  }

  /** @internal The transport's event callback. */
  receive(event: RunEvent): void {
    if (this.#disposed || event.run_id !== this.runId) return;
    this.#pending.push(event);
    this.#draining ??= this.#drain();
  }

  /** @internal */
  attach(unsubscribe: () => Promise<void>): void {
    this.#unsubscribe = unsubscribe;
  }

  get flowSlug(): string {
    return this.#state.run.flow_slug;
  }

  get status(): RunStatus {
    return this.#state.run.status;
  }

  get input(): InputOf<F> {
    return this.#state.run.input as InputOf<F>;
  }

  /** The leaf steps' outputs once the run completed, else null. */
  get output(): OutputOf<F> | null {
    return this.#state.run.output as OutputOf<F> | null;
  }

  get remainingSteps(): number {
    return this.#state.run.remaining_steps;
  }

  get startedAt(): Date {
    return new Date(this.#state.run.started_at);
  }

  get completedAt(): Date | null {
    return toDate(this.#state.run.completed_at);
  }

  get failedAt(): Date | null {
    return toDate(this.#state.run.failed_at);
  }

  /** The step whose failure failed the run, with its error message. */
  get failure(): { step: StepSlugOf<F>; errorMessage: string | null } | undefined {
    // The core fails the run's other open steps too, with a "cancelled: ..." message.
    const failed = this.#state.steps.filter((step) => step.status === "failed");
    const cause = failed.find((step) => !step.error_message?.startsWith(CANCELLED)) ?? failed[0];
    if (!cause) return undefined;
    return { step: cause.step_slug as StepSlugOf<F>, errorMessage: cause.error_message };
  }

  /** Every step's state, in definition order. */
  get steps(): StepState<StepSlugOf<F>>[] {
    return this.#state.steps.map((row) => stepState<StepSlugOf<F>>(row));
  }

  /** One step's state (TypeError for a slug the run does not have). */
  step(slug: StepSlugOf<F>): StepState<StepSlugOf<F>> {
    const row = this.#state.steps.find((step) => step.step_slug === slug);
    if (!row) {
      const known = this.#state.steps.map((step) => step.step_slug).join(", ");
      throw new TypeError(`run ${this.runId} has no step "${slug}" (steps: ${known})`);
    }
    return stepState(row);
  }

  /**
   * Calls `listener` for matching events, after the run's state reflects them: an event name
   * (`run:completed`, `step:<slug>:failed`), `run:*`, `step:<slug>:*`, `step:*` or `*`.
   * Returns the unsubscribe.
   */
  on(pattern: RunEventPattern<F>, listener: RunEventListener<F>): () => void {
    if (
      !/^(\*|run:(\*|started|completed|failed)|step:(\*|.+:(\*|started|completed|failed)))$/.test(
        pattern,
      )
    ) {
      throw new TypeError(
        `run.on: "${pattern}" is not an event pattern (run:<status>, run:*, ` +
          `step:<slug>:<status>, step:<slug>:*, step:* or *; status: started, completed, failed)`,
      );
    }
    let set = this.#listeners.get(pattern);
    if (!set) this.#listeners.set(pattern, set = new Set());
    set.add(listener);
    return () => void set.delete(listener);
  }

  /**
   * Resolves with this handle once the run has `status`. Rejects with RunEndedError when the
   * run ended otherwise, RunWaitTimeoutError after `timeoutMs`, RunDisposedError on dispose.
   */
  waitFor(status: "completed" | "failed" | "started", options: WaitOptions = {}): Promise<this> {
    return new Promise<this>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => finish(() => reject(options.signal?.reason));
      const finish = (settle: () => void) => {
        this.#waiters.delete(waiter);
        if (timer !== undefined) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        settle();
      };
      const waiter: Waiter = {
        check: () => {
          const current = this.status;
          if (current === status) {
            finish(() => resolve(this));
            return true;
          }
          if (current !== "started") {
            const failure = this.failure;
            finish(() =>
              reject(
                new RunEndedError(
                  this.runId,
                  status,
                  current,
                  failure?.step,
                  failure?.errorMessage ?? undefined,
                ),
              )
            );
            return true;
          }
          return false;
        },
        reject: (error) => finish(() => reject(error)),
      };
      if (options.signal?.aborted) return reject(options.signal.reason);
      if (this.#disposed) return reject(new RunDisposedError(this.runId));
      if (waiter.check()) return;
      this.#waiters.add(waiter);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          finish(() =>
            reject(
              new RunWaitTimeoutError(this.runId, status, this.status, options.timeoutMs!),
            )
          );
        }, options.timeoutMs);
      }
    });
  }

  /** Re-reads the run now (events do this by themselves). */
  async refresh(): Promise<void> {
    this.#update(await this.#transport.getRunWithStates(this.runId));
  }

  /** Unsubscribes and rejects pending waits; the last state stays readable. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#pending = [];
    for (const waiter of [...this.#waiters]) waiter.reject(new RunDisposedError(this.runId));
    this.#listeners.clear();
    await this.#release();
    await this.#draining;
  }

  /** Whether the run has ended (no more events will come). */
  get ended(): boolean {
    return this.status !== "started";
  }

  /**
   * Settles waiters on the current state; unsubscribes when the run has ended and its ending
   * event was heard (or was never due: the run had ended before this handle read it), else after
   * ENDING_EVENT_GRACE_MS.
   */
  settle(): void {
    for (const waiter of [...this.#waiters]) waiter.check();
    if (!this.ended || this.#pending.length > 0) return;
    if (this.#endingEventHeard || !this.#endingEventDue) void this.#release();
    else this.#graceTimer ??= setTimeout(() => void this.#release(), ENDING_EVENT_GRACE_MS);
  }

  async #drain(): Promise<void> {
    while (this.#pending.length > 0 && !this.#disposed) {
      const batch = this.#pending;
      this.#pending = [];
      try {
        await this.refresh();
      } catch (error) {
        this.#onError(error);
      }
      for (const event of batch) this.#emit(event);
      this.settle();
    }
    this.#draining = undefined;
  }

  #emit(event: RunEvent): void {
    const name = event.event;
    if (ENDING_EVENT.test(name)) this.#endingEventHeard = true;
    const patterns = ["*", name];
    const step = /^step:(.+):(started|completed|failed)$/.exec(name);
    if (step) patterns.push("step:*", `step:${step[1]}:*`);
    else patterns.push("run:*");
    for (const pattern of patterns) {
      for (const listener of this.#listeners.get(pattern) ?? []) {
        try {
          listener(event, this);
        } catch (error) {
          this.#onError(error);
        }
      }
    }
  }

  #update(state: RunWithStates): void {
    this.#state = state;
  }

  #release(): Promise<void> {
    clearTimeout(this.#graceTimer);
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    if (unsubscribe) {
      this.#releasing = unsubscribe().catch((error) => this.#onError(error));
    }
    return this.#releasing ?? Promise.resolve();
  }
}

function stepState<TSlug extends string>(row: JsonRow<StepStateRow>): StepState<TSlug> {
  return {
    slug: row.step_slug as TSlug,
    status: row.status,
    remainingTasks: row.remaining_tasks,
    errorMessage: row.error_message,
    startedAt: toDate(row.started_at),
    completedAt: toDate(row.completed_at),
    failedAt: toDate(row.failed_at),
  };
}

function toDate(value: string | null): Date | null {
  return value === null ? null : new Date(value);
}
