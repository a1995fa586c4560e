/**
 * Logs a recurring activity's trouble once per episode: the first failure with its cause (at
 * warn), later ones of the same episode only counted, and one line when it works again, with
 * how many attempts failed and for how long. During a database outage every heartbeat, poll
 * and report fails; one line each is what an operator needs, not one per attempt.
 */
import { errorText } from "./failure_message.ts";
import type { LogFields, Logger } from "./logger.ts";

export class FailureEpisode {
  readonly #log: Logger;
  readonly #failedMsg: string;
  readonly #recoveredMsg: string;
  #failures = 0;
  #since = 0;

  constructor(log: Logger, messages: { failed: string; recovered: string }) {
    this.#log = log;
    this.#failedMsg = messages.failed;
    this.#recoveredMsg = messages.recovered;
  }

  /** Whether the last attempt failed. */
  get failing(): boolean {
    return this.#failures > 0;
  }

  failed(error: unknown, fields?: LogFields): void {
    if (this.#failures++ === 0) {
      this.#since = performance.now();
      this.#log.warn(this.#failedMsg, {
        ...fields,
        error: errorText(error),
        code: errorCode(error),
      });
    }
  }

  succeeded(fields?: LogFields): void {
    if (this.#failures === 0) return;
    this.#log.info(this.#recoveredMsg, {
      ...fields,
      failedAttempts: this.#failures,
      durationMs: performance.now() - this.#since,
    });
    this.#failures = 0;
  }
}

/** postgres.js's or the socket's error code (`ECONNREFUSED`, `CONNECTION_CLOSED`, a SQLSTATE). */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
