/** Typed calls for worker bookkeeping: registration, heartbeats, deprecation, stopping. */
import type { Sql } from "./connect.ts";
import { withDeadline } from "./deadline.ts";

export async function registerWorker(
  sql: Sql,
  args: { workerId: string; queueName: string; functionName: string },
): Promise<void> {
  await sql`
    select pgflow.register_worker(
      worker_id => ${args.workerId}::uuid,
      queue_name => ${args.queueName},
      function_name => ${args.functionName})`;
}

/**
 * `true` when the worker was deprecated and must stop taking work. With `timeoutMs`, a
 * heartbeat that gets no answer in time is cancelled and rejects (QueryTimeoutError).
 */
export async function workerHeartbeat(
  sql: Sql,
  workerId: string,
  options: { timeoutMs?: number } = {},
): Promise<boolean> {
  const query = sql<{ deprecated: boolean }[]>`
    select pgflow.worker_heartbeat(${workerId}::uuid) as deprecated`;
  const [row] = options.timeoutMs === undefined
    ? await query
    : await withDeadline(query, options.timeoutMs, "heartbeat");
  return row.deprecated;
}

/**
 * Deprecates the running workers (of one function, or all): each learns it at its next
 * heartbeat and shuts down. Returns how many were deprecated.
 */
export async function deprecateWorkers(sql: Sql, functionName?: string): Promise<number> {
  const [row] = await sql<{ count: number }[]>`
    select pgflow.deprecate_workers(${functionName ?? null}::text) as count`;
  return row.count;
}

export async function markWorkerStopped(sql: Sql, workerId: string): Promise<void> {
  await sql`select pgflow.mark_worker_stopped(${workerId}::uuid)`;
}
