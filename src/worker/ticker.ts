/**
 * Runs an async task every `intervalMs` (a number, or a function asked before each wait), never
 * overlapping itself; `stop()` waits for a run in progress.
 */
export class Ticker {
  readonly #intervalMs: number | (() => number);
  readonly #task: () => Promise<void>;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #current: Promise<void> | undefined;
  #stopped = false;

  constructor(intervalMs: number | (() => number), task: () => Promise<void>) {
    this.#intervalMs = intervalMs;
    this.#task = task;
  }

  start(): void {
    if (this.#stopped || this.#timer !== undefined || this.#current) return;
    this.#schedule();
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#current = this.#task().catch(() => {}).finally(() => {
        this.#current = undefined;
        if (!this.#stopped) this.#schedule();
      });
    }, typeof this.#intervalMs === "function" ? this.#intervalMs() : this.#intervalMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#current;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
