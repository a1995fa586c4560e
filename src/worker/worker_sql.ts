/**
 * The SQL calls only the worker makes: worker bookkeeping and plain pgmq reads, releases and
 * archives. (Flow tasks use src/db/tasks.ts: start_tasks, complete_task, fail_task.)
 */
import type postgres from "postgres";
import type { Sql } from "../db/connect.ts";
import type { Json, QueueMessage, StepTaskRecord, TaskMessage, TaskStatus } from "../db/types.ts";

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

/** Creates the queue when it does not exist (pgmq.create is idempotent). */
export async function ensureQueue(sql: Sql, queueName: string): Promise<void> {
  await sql`select pgmq.create(${queueName})`;
}

/** Non-blocking read: claims up to `qty` visible messages for `vt` seconds. */
export async function readMessages<T = Json>(
  sql: Sql,
  args: { queueName: string; vt: number; qty: number },
): Promise<QueueMessage<T>[]> {
  const rows = await sql<QueueMessage<T>[]>`
    select * from pgmq.read(${args.queueName}, ${args.vt}::int, ${args.qty}::int)`;
  return normalize(rows);
}

/** A task `start_tasks` started, with the message it was read from. */
export interface StartedTask {
  task: StepTaskRecord;
  message: QueueMessage<TaskMessage>;
}

/**
 * Both phases in one statement (one round trip, one transaction): `pgmq.read` claims up to
 * `qty` visible messages, `pgflow.start_tasks` starts their tasks. A message is never left
 * claimed but unstarted by a worker that dies between the phases.
 */
export async function readAndStartTasks(
  sql: Sql,
  args: { flowSlug: string; workerId: string; vt: number; qty: number },
): Promise<StartedTask[]> {
  const rows = await sql<(StepTaskRecord & Omit<QueueMessage<TaskMessage>, "msg_id">)[]>`
    with claimed as materialized (
      select * from pgmq.read(${args.flowSlug}, ${args.vt}::int, ${args.qty}::int)
    )
    select t.flow_slug, t.run_id, t.step_slug, t.input, t.msg_id, t.task_index,
           m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    from pgflow.start_tasks(
      flow_slug => ${args.flowSlug},
      msg_ids => (select coalesce(array_agg(msg_id), '{}') from claimed),
      worker_id => ${args.workerId}::uuid) t
    join claimed m on m.msg_id = t.msg_id`;
  return rows.map((row) => {
    const msgId = Number(row.msg_id);
    return {
      task: {
        flow_slug: row.flow_slug,
        run_id: row.run_id,
        step_slug: row.step_slug,
        input: row.input,
        msg_id: msgId,
        task_index: row.task_index,
      },
      message: {
        msg_id: msgId,
        read_ct: row.read_ct,
        enqueued_at: row.enqueued_at,
        vt: row.vt,
        message: row.message,
        headers: row.headers,
      },
    };
  });
}

export interface Completion {
  runId: string;
  stepSlug: string;
  taskIndex: number;
  /** The output as JSON text (already checked). */
  outputJson: string;
}

export interface CompletionResult {
  status: TaskStatus;
  error_message: string | null;
}

/**
 * `pgflow.complete_task` for several tasks in one statement and one transaction, in
 * (run, step, task) order so concurrent batches lock runs in the same order. Returns each
 * task's row after the call (status, error_message), in the order given.
 */
export async function completeTasks(
  sql: Sql,
  completions: Completion[],
): Promise<CompletionResult[]> {
  if (completions.length === 1) {
    // The plain call plans faster than the unnest form, and an idle worker sends one at a time.
    const [one] = completions;
    const [row] = await sql<CompletionResult[]>`
      select status, error_message from pgflow.complete_task(
        run_id => ${one.runId}::uuid,
        step_slug => ${one.stepSlug},
        task_index => ${one.taskIndex}::int,
        output => (${one.outputJson}::text)::jsonb)`;
    return [row];
  }
  const order = completions.map((_, index) => index).sort((a, b) => {
    const x = completions[a], y = completions[b];
    return x.runId < y.runId
      ? -1
      : x.runId > y.runId
      ? 1
      : x.stepSlug < y.stepSlug
      ? -1
      : x.stepSlug > y.stepSlug
      ? 1
      : x.taskIndex - y.taskIndex;
  });
  const rows = await sql<(CompletionResult & { ord: number })[]>`
    select x.ord::int as ord, t.status, t.error_message
    from unnest(
      ${order.map((i) => completions[i].runId)}::uuid[],
      ${order.map((i) => completions[i].stepSlug)}::text[],
      ${order.map((i) => completions[i].taskIndex)}::int[],
      ${order.map((i) => completions[i].outputJson)}::text[]
    ) with ordinality as x(run_id, step_slug, task_index, output, ord)
    cross join lateral pgflow.complete_task(
      run_id => x.run_id,
      step_slug => x.step_slug,
      task_index => x.task_index,
      output => x.output::jsonb) t
    order by x.ord`;
  const results: CompletionResult[] = new Array(completions.length);
  for (const row of rows) {
    results[order[row.ord - 1]] = { status: row.status, error_message: row.error_message };
  }
  return results;
}

/**
 * Long poll: `pgmq.read_with_poll`. Returns the pending query so the caller can cancel it
 * (`query.cancel()`); run it on a connection nothing else uses.
 */
export function longPollMessages<T = Json>(
  sql: Sql,
  args: {
    queueName: string;
    vt: number;
    qty: number;
    maxPollSeconds: number;
    pollIntervalMs: number;
  },
): postgres.PendingQuery<QueueMessage<T>[]> {
  return sql<QueueMessage<T>[]>`
    select * from pgmq.read_with_poll(
      queue_name => ${args.queueName},
      vt => ${args.vt}::int,
      qty => ${args.qty}::int,
      max_poll_seconds => ${args.maxPollSeconds}::int,
      poll_interval_ms => ${args.pollIntervalMs}::int)`;
}

/**
 * Makes claimed messages visible again at once (a stopping worker gives them back), and
 * wakes the workers that LISTEN on the queue.
 */
export async function releaseMessages(
  sql: Sql,
  queueName: string,
  msgIds: number[],
): Promise<void> {
  if (msgIds.length === 0) return;
  await sql`
    select count(*), pg_notify(${"pgflow:queue:" + queueName}, '')
    from pgflow.set_vt_batch(${queueName}, ${msgIds}::bigint[], ${msgIds.map(() => 0)}::int[])`;
}

/**
 * Milliseconds until the queue's next hidden message becomes visible (0 or less: one is
 * visible now), `null` when the queue is empty. Reads pgmq's queue table (`pgmq.q_<name>`,
 * indexed on vt); the difference is computed in the database, so clocks need not agree.
 */
export async function millisUntilNextVisible(
  sql: Sql,
  queueName: string,
): Promise<number | null> {
  const [row] = await sql<{ ms: number | null }[]>`
    select (extract(epoch from min(vt) - clock_timestamp()) * 1000)::float8 as ms
    from ${sql("pgmq." + `q_${queueName.toLowerCase()}`)}`;
  return row.ms === null ? null : Math.ceil(row.ms);
}

export async function archiveMessage(sql: Sql, queueName: string, msgId: number): Promise<void> {
  await sql`select pgmq.archive(${queueName}, ${msgId}::bigint)`;
}

/** Hides a message for `vt` seconds from now (a queue worker's retry delay). */
export async function delayMessage(
  sql: Sql,
  queueName: string,
  msgId: number,
  vt: number,
): Promise<void> {
  await sql`select 1 from pgmq.set_vt(${queueName}, ${msgId}::bigint, ${vt}::int)`;
}

/** int8 columns are numbers with edgeflow's pool; a caller's own pool may give strings. */
export function normalize<T extends { msg_id: number }>(rows: T[]): T[] {
  for (const row of rows) {
    if (typeof row.msg_id !== "number") row.msg_id = Number(row.msg_id);
  }
  return rows;
}
