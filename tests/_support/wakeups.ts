/** Counting the SQL core's queue wake-ups (NOTIFY "pgflow:queue:<flow>") in tests. */
import type { Sql } from "../../src/db/connect.ts";
import { QUEUE_CHANNEL_PREFIX } from "../../src/limits.ts";
import { eventually } from "./eventually.ts";

/**
 * Counts the queue wake-ups of `flows`; the function returned gives the counts so far. They are
 * final once a marker sent afterwards on each channel has arrived: notifications arrive in the
 * order their transactions committed.
 */
export async function listenForWakeUps(listener: Sql, flows: string[]) {
  const counts: Record<string, number> = {};
  const marked = new Set<string>();
  for (const flow of flows) {
    counts[flow] = 0;
    await listener.listen(QUEUE_CHANNEL_PREFIX + flow, (payload) => {
      if (payload === "marker") marked.add(flow);
      else counts[flow]++;
    });
  }
  return async (sql: Sql): Promise<Record<string, number>> => {
    marked.clear();
    for (const flow of flows) await sql`select pg_notify(${QUEUE_CHANNEL_PREFIX + flow}, 'marker')`;
    await eventually("the markers", () => marked.size === flows.length);
    return { ...counts };
  };
}
