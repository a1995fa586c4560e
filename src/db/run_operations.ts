/**
 * Typed calls for operating runs: cancel, resume, restart (clients, as `start_flow`), and the
 * worker's check for cancelled runs among its in-flight tasks.
 */
import type { Sql } from "./connect.ts";
import type { RunRow } from "./types.ts";

/** Cancels a started run; a cancelled run comes back unchanged, a finished one is an error. */
export async function cancelRun(
  sql: Sql,
  args: { runId: string; reason?: string },
): Promise<RunRow> {
  const [row] = await sql<RunRow[]>`
    select * from pgflow.cancel_run(${args.runId}::uuid, ${args.reason ?? null}::text)`;
  return row;
}

/** Continues a failed or cancelled run in place; returns it, started again. */
export async function resumeRun(sql: Sql, runId: string): Promise<RunRow> {
  const [row] = await sql<RunRow[]>`select * from pgflow.resume_run(${runId}::uuid)`;
  return row;
}

/** Starts a new run of a finished run's flow and input; returns the new run. */
export async function restartRun(sql: Sql, runId: string): Promise<RunRow> {
  const [row] = await sql<RunRow[]>`select * from pgflow.restart_run(${runId}::uuid)`;
  return row;
}

/** Which of `runIds` are cancelled (workers abort their handlers). */
export async function cancelledRuns(sql: Sql, runIds: readonly string[]): Promise<string[]> {
  if (runIds.length === 0) return [];
  const rows = await sql<{ run_id: string }[]>`
    select run_id from pgflow.cancelled_runs(${runIds as string[]}::uuid[]) as run_id`;
  return rows.map((row) => row.run_id);
}
