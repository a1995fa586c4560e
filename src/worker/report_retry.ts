/**
 * Reports (complete_task, fail_task, archive, ...) are retried a few times when the error is
 * a connection problem, not when the database refused the call. Duplicate reports are safe:
 * the SQL core ignores a report for a task that is no longer `started`. A report that never
 * gets through is recovered by the SQL core after the message's visibility timeout.
 */
import { sleep } from "./ticker.ts";

const DELAYS_MS = [50, 250, 1_000];

export async function withReportRetries<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= DELAYS_MS.length || !isTransient(error)) throw error;
      await sleep(DELAYS_MS[attempt]);
    }
  }
}

/**
 * Connection-level failures (postgres.js codes like CONNECTION_CLOSED, socket errors) and
 * SQLSTATEs that mean "try again": 08 connection exception, 40 serialization failure /
 * deadlock, 53 insufficient resources, 57P01-57P03 server shutting down or not ready.
 */
export function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  if (/^[0-9A-Z]{5}$/.test(code)) return /^(08|40|53|57P0[123])/.test(code);
  return code !== "CONNECTION_ENDED" && code !== "CONNECTION_DESTROYED";
}
