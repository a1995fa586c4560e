/**
 * Reports (complete_task, fail_task, archive, ...) that fail for a connection problem are
 * retried until they get through, not given up on: a lost report would leave the task to be
 * recovered after its timeout and run again. Retries stop when the database refused the call,
 * or when `signal` aborts (the worker is closing its pool). Duplicate reports are safe: the SQL
 * core ignores a report for a task that is no longer `started`.
 */
import { FailureEpisode } from "./failure_episode.ts";
import type { LogFields, Logger } from "./logger.ts";
import { sleep } from "./ticker.ts";

/** Wait before the next attempt: 50 ms doubling to 1 s, so a report goes through within about a second of the database's return. */
export function retryDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** attempt, 1_000);
}

export interface ReportRetry {
  log: Logger;
  /** What is reported, for the log line (e.g. "the completed task"). */
  what: string;
  fields?: LogFields;
  /** Ends the retries (the last error is thrown). */
  signal?: AbortSignal;
}

export async function withReportRetries<T>(
  call: () => Promise<T>,
  retry?: ReportRetry,
): Promise<T> {
  const episode = retry &&
    new FailureEpisode(retry.log, {
      failed: `could not report ${retry.what}; retrying`,
      recovered: "report went through",
    });
  for (let attempt = 0;; attempt++) {
    try {
      const result = await call();
      episode?.succeeded(retry?.fields);
      return result;
    } catch (error) {
      if (!isTransient(error) || retry?.signal?.aborted) throw error;
      episode?.failed(error, retry?.fields);
      await sleep(retryDelayMs(attempt), retry?.signal);
    }
  }
}

/** postgres.js's codes for a connection that was lost or could not be made. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
]);

/**
 * Connection-level failures (above; not CONNECTION_ENDED or CONNECTION_DESTROYED: the pool was
 * closed on purpose) and SQLSTATEs that mean "try again": 08 connection exception, 40
 * serialization failure / deadlock, 53 insufficient resources, 57P01-57P03 server shutting down,
 * crashed or not ready yet.
 */
export function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  // Before the SQLSTATE test: "EPIPE" has five characters too.
  if (CONNECTION_CODES.has(code)) return true;
  return /^[0-9A-Z]{5}$/.test(code) && /^(08|40|53|57P0[123])/.test(code);
}
