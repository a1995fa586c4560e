/** Typed calls for worker bookkeeping: registration, heartbeats, deprecation, stopping. */
import type { Sql } from "./connect.ts";

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

/** `true` when the worker was deprecated and must stop taking work. */
export async function workerHeartbeat(sql: Sql, workerId: string): Promise<boolean> {
  const [row] = await sql<{ deprecated: boolean }[]>`
    select pgflow.worker_heartbeat(${workerId}::uuid) as deprecated`;
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
