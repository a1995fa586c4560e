/**
 * Moving the engine's clock in tests (pgflow.advance_clock, sql/engine/clock.sql): time
 * passes for the engine and its flows' queues without sleeping or rewriting rows.
 */
import type { Sql } from "../../src/db/connect.ts";

/** Advances the engine's clock by `interval` (e.g. "9 seconds", "31 days"); returns the new time. */
export async function advanceClock(sql: Sql, interval: string): Promise<Date> {
  const [row] = await sql<
    { now: Date }[]
  >`select pgflow.advance_clock(${interval}::interval) as now`;
  return row.now;
}

/** Advances the engine's clock by `seconds`. */
export function advanceSeconds(sql: Sql, seconds: number): Promise<Date> {
  return advanceClock(sql, `${seconds} seconds`);
}
