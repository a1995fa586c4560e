/**
 * Drives the SQL core by hand, as a worker would: read messages from the
 * flow's queue, start their tasks, and report results. Tests use it to run
 * flows without the TypeScript worker.
 */
import type { Sql } from "../../src/db/connect.ts";
import { readMessages } from "../../src/db/queue.ts";
import { completeTask, failTask, startTasks } from "../../src/db/tasks.ts";
import type { Json, RunRow, StepTaskRecord } from "../../src/db/types.ts";

export const WORKER_ID = "11111111-1111-4111-8111-111111111111";

/** Phase 1 (pgmq.read) and phase 2 (start_tasks) for up to `qty` visible messages. */
export async function takeTasks(
  sql: Sql,
  flowSlug: string,
  qty = 1000,
  workerId = WORKER_ID,
): Promise<StepTaskRecord[]> {
  const messages = await readMessages(sql, { queueName: flowSlug, vt: 30, qty });
  if (messages.length === 0) return [];
  const tasks = await startTasks(sql, {
    flowSlug,
    msgIds: messages.map((m) => m.msg_id),
    workerId,
  });
  return [...tasks];
}

export type Handler = (input: Json, task: StepTaskRecord) => Json;

/** Runs visible tasks with `handlers[step_slug]` until the queue has none left. */
export async function runUntilIdle(
  sql: Sql,
  flowSlug: string,
  handlers: Record<string, Handler>,
): Promise<StepTaskRecord[]> {
  const done: StepTaskRecord[] = [];
  for (let round = 0; round < 1000; round++) {
    const tasks = await takeTasks(sql, flowSlug);
    if (tasks.length === 0) return done;
    for (const task of tasks) {
      const handler = handlers[task.step_slug];
      if (!handler) throw new Error(`no test handler for step ${task.step_slug}`);
      await completeTask(sql, {
        runId: task.run_id,
        stepSlug: task.step_slug,
        taskIndex: task.task_index,
        output: handler(task.input, task),
      });
      done.push(task);
    }
  }
  throw new Error(`flow ${flowSlug} did not go idle after 1000 rounds`);
}

export function failOne(sql: Sql, task: StepTaskRecord, message: string) {
  return failTask(sql, {
    runId: task.run_id,
    stepSlug: task.step_slug,
    taskIndex: task.task_index,
    errorMessage: message,
  });
}

export async function getRun(sql: Sql, runId: string): Promise<RunRow> {
  const [run] = await sql<RunRow[]>`select * from pgflow.runs where run_id = ${runId}`;
  return run;
}

/** step_slug -> status for a run. */
export async function stepStatuses(sql: Sql, runId: string): Promise<Record<string, string>> {
  const rows = await sql<{ step_slug: string; status: string }[]>`
    select step_slug, status from pgflow.step_states where run_id = ${runId} order by step_slug`;
  return Object.fromEntries(rows.map((r) => [r.step_slug, r.status]));
}

/** Applies SQL statements (e.g. the spec's create_flow/add_step calls) in one go. */
export async function define(sql: Sql, statements: string): Promise<void> {
  await sql.unsafe(statements);
}
