/** Typed calls a worker makes: the two polling phases and the two reports. */
import type { Sql } from "./connect.ts";
import { toJsonText } from "./json.ts";
import type { Json, QueueMessage, StepTaskRecord, StepTaskRow, TaskMessage } from "./types.ts";

export interface ReadWithPollArgs {
  queueName: string;
  /** Seconds the read messages stay hidden from other readers. */
  vt: number;
  qty: number;
  maxPollSeconds?: number;
  pollIntervalMs?: number;
}

/** Phase 1: reserve up to `qty` messages, waiting up to `maxPollSeconds` for one. */
export function readWithPoll(
  sql: Sql,
  args: ReadWithPollArgs,
): Promise<QueueMessage<TaskMessage>[]> {
  return sql<QueueMessage<TaskMessage>[]>`
    select * from pgmq.read_with_poll(
      queue_name => ${args.queueName},
      vt => ${args.vt}::int,
      qty => ${args.qty}::int,
      max_poll_seconds => ${args.maxPollSeconds ?? 5}::int,
      poll_interval_ms => ${args.pollIntervalMs ?? 100}::int)`;
}

/** Phase 2: turn reserved messages into started tasks with their inputs. */
export function startTasks(
  sql: Sql,
  args: { flowSlug: string; msgIds: number[]; workerId: string },
): Promise<StepTaskRecord[]> {
  return sql<StepTaskRecord[]>`
    select * from pgflow.start_tasks(
      flow_slug => ${args.flowSlug},
      msg_ids => ${args.msgIds}::bigint[],
      worker_id => ${args.workerId}::uuid)`;
}

export interface TaskKey {
  runId: string;
  stepSlug: string;
  taskIndex: number;
}

export async function completeTask(
  sql: Sql,
  args: TaskKey & { output: Json | unknown },
): Promise<StepTaskRow> {
  const output = toJsonText(args.output, `output of step "${args.stepSlug}"`);
  const [row] = await sql<StepTaskRow[]>`
    select * from pgflow.complete_task(
      run_id => ${args.runId}::uuid,
      step_slug => ${args.stepSlug},
      task_index => ${args.taskIndex}::int,
      output => (${output}::text)::jsonb)`;
  return row;
}

export async function failTask(
  sql: Sql,
  args: TaskKey & { errorMessage: string },
): Promise<StepTaskRow> {
  const [row] = await sql<StepTaskRow[]>`
    select * from pgflow.fail_task(
      run_id => ${args.runId}::uuid,
      step_slug => ${args.stepSlug},
      task_index => ${args.taskIndex}::int,
      error_message => ${args.errorMessage})`;
  return row;
}

export function setVtBatch(
  sql: Sql,
  args: { queueName: string; msgIds: number[]; vtOffsets: number[] },
): Promise<QueueMessage[]> {
  return sql<QueueMessage[]>`
    select * from pgflow.set_vt_batch(
      ${args.queueName}, ${args.msgIds}::bigint[], ${args.vtOffsets}::int[])`;
}

export async function calculateRetryDelay(
  sql: Sql,
  baseDelay: number,
  attemptsCount: number,
): Promise<number> {
  const [row] = await sql<{ delay: number }[]>`
    select pgflow.calculate_retry_delay(${baseDelay}::numeric, ${attemptsCount}::int) as delay`;
  return row.delay;
}

export interface TaskCompletion extends TaskKey {
  output: unknown;
}

/**
 * Completes many tasks in one statement (one round trip, one commit): a worker's
 * way to keep up with fast handlers. Reports are applied in (run, step, task)
 * order so that concurrent batches lock runs in the same order and cannot
 * deadlock. All or nothing: if one report raises, none is applied.
 */
export async function completeTasks(
  sql: Sql,
  completions: readonly TaskCompletion[],
): Promise<StepTaskRow[]> {
  if (completions.length === 0) return [];
  const sorted = [...completions].sort(compareTaskKeys);
  const outputs = sorted.map((c) => toJsonText(c.output, `output of step "${c.stepSlug}"`));
  const rows = await sql<StepTaskRow[]>`
    select done.*
    from unnest(
      ${sorted.map((c) => c.runId)}::uuid[],
      ${sorted.map((c) => c.stepSlug)}::text[],
      ${sorted.map((c) => c.taskIndex)}::int[],
      ${outputs}::text[]
    ) with ordinality as r(run_id, step_slug, task_index, output, ord)
    cross join lateral pgflow.complete_task(r.run_id, r.step_slug, r.task_index, r.output::jsonb) as done
    order by r.ord`;
  return [...rows];
}

function compareTaskKeys(a: TaskKey, b: TaskKey): number {
  if (a.runId !== b.runId) return a.runId < b.runId ? -1 : 1;
  if (a.stepSlug !== b.stepSlug) return a.stepSlug < b.stepSlug ? -1 : 1;
  return a.taskIndex - b.taskIndex;
}

/**
 * Completes a task and, in the same transaction, reads and starts up to `qty`
 * visible tasks of its flow (those the completion made ready included): one
 * round trip per DAG level for a worker with free slots.
 */
export async function completeTaskAndClaim(
  sql: Sql,
  args: TaskKey & { output: unknown; workerId: string; vt: number; qty: number },
): Promise<StepTaskRecord[]> {
  const output = toJsonText(args.output, `output of step "${args.stepSlug}"`);
  const rows = await sql<StepTaskRecord[]>`
    select * from pgflow.complete_task_and_claim(
      run_id => ${args.runId}::uuid,
      step_slug => ${args.stepSlug},
      task_index => ${args.taskIndex}::int,
      output => (${output}::text)::jsonb,
      worker_id => ${args.workerId}::uuid,
      vt => ${args.vt}::int,
      qty => ${args.qty}::int)`;
  return [...rows];
}
