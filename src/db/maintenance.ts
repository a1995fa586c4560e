/** Typed calls for operations: recovery and retention. */
import type { Sql } from "./connect.ts";
import type { PruneResult } from "./types.ts";

/** Fails (retries or gives up) tasks started longer ago than their step timeout. */
export async function requeueStalledTasks(sql: Sql, flowSlug?: string): Promise<number> {
  const [row] = await sql<{ count: number }[]>`
    select pgflow.requeue_stalled_tasks(${flowSlug ?? null}) as count`;
  return row.count;
}

/** Deletes finished runs, archived messages and old workers older than `interval` (e.g. '30 days'). */
export async function pruneDataOlderThan(sql: Sql, interval: string): Promise<PruneResult> {
  const [row] = await sql<{ result: PruneResult }[]>`
    select pgflow.prune_finished_data(${interval}::interval) as result`;
  return row.result;
}
