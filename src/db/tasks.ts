/**
 * Typed calls on a flow's tasks: starting them (phase 2 of a worker's poll, alone or with
 * phase 1 in one statement) and reporting their outcome.
 */
import type { Sql } from "./connect.ts";
import { toJsonText } from "./json.ts";
import { literal, oneTrip } from "./one_trip.ts";
import type { Json, QueueMessage, StepTaskRecord, StepTaskRow, TaskMessage } from "./types.ts";

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

/** A task `start_tasks` started, with the message it was read from. */
export interface StartedTask {
  task: StepTaskRecord;
  message: QueueMessage<TaskMessage>;
  /** Which attempt this is, 1 for the first (`step_tasks.attempts_count` after the start). */
  attempt: number;
}

/**
 * Phase 2 as a worker runs it: `start_tasks`, with each task's attempt number. The statement
 * sees `step_tasks` as it was before `start_tasks` counted the attempt (a function's changes
 * are not visible to the statement that calls it), so the attempt is that count plus one.
 */
export async function startTasksWithAttempts(
  sql: Sql,
  args: { flowSlug: string; msgIds: number[]; workerId: string },
): Promise<{ task: StepTaskRecord; attempt: number }[]> {
  const rows = await oneTrip(sql)<(StepTaskRecord & { attempt: number })[]>`
    select s.flow_slug, s.run_id, s.step_slug, s.input, s.msg_id, s.task_index,
           t.attempts_count + 1 as attempt
    from pgflow.start_tasks(
      flow_slug => ${literal.text(args.flowSlug, "flow slug")},
      msg_ids => ${literal.bigintArray(args.msgIds, "message ids")},
      worker_id => ${literal.uuid(args.workerId, "worker id")}) s
    join pgflow.step_tasks t
      on t.run_id = s.run_id and t.step_slug = s.step_slug and t.task_index = s.task_index`;
  return rows.map(({ attempt, ...task }) => ({ task, attempt }));
}

/**
 * Both phases in one round trip and one transaction (`pgflow.read_and_start_tasks`):
 * `pgmq.read` claims up to `qty` visible messages, `start_tasks` starts their tasks. A
 * message is never left claimed but unstarted by a worker that dies between the phases.
 */
export async function readAndStartTasks(
  sql: Sql,
  args: { flowSlug: string; workerId: string; vt: number; qty: number },
): Promise<StartedTask[]> {
  const rows = await oneTrip(sql)<ClaimedRow[]>`
    select * from pgflow.read_and_start_tasks(
      flow_slug => ${literal.text(args.flowSlug, "flow slug")},
      vt => ${literal.int(args.vt, "vt")},
      qty => ${literal.int(args.qty, "qty")},
      worker_id => ${literal.uuid(args.workerId, "worker id")})`;
  return rows.map(startedTask);
}

/**
 * The long poll of a worker without LISTEN (`pgflow.read_and_start_tasks_with_poll`): claims and
 * starts up to `qty` tasks as `readAndStartTasks` does, checking every `pollIntervalMs` for up to
 * `maxPollSeconds`, in one statement. `cancel()` ends the wait (nothing is claimed then); run it
 * on a connection nothing else uses.
 */
export function readAndStartTasksWithPoll(
  sql: Sql,
  args: {
    flowSlug: string;
    workerId: string;
    vt: number;
    qty: number;
    maxPollSeconds: number;
    pollIntervalMs: number;
  },
): { started: Promise<StartedTask[]>; cancel(): unknown } {
  const query = oneTrip(sql)<ClaimedRow[]>`
    select * from pgflow.read_and_start_tasks_with_poll(
      flow_slug => ${literal.text(args.flowSlug, "flow slug")},
      vt => ${literal.int(args.vt, "vt")},
      qty => ${literal.int(args.qty, "qty")},
      worker_id => ${literal.uuid(args.workerId, "worker id")},
      max_poll_seconds => ${literal.int(args.maxPollSeconds, "maxPollSeconds")},
      poll_interval_ms => ${literal.int(args.pollIntervalMs, "pollIntervalMs")})`;
  return {
    started: query.then((rows) => rows.map(startedTask)),
    // postgres.js's cancel returns the promise of the cancel request, whatever its types say.
    cancel: (): unknown => query.cancel(),
  };
}

/** One row of `read_and_start_tasks` (as jsonb in the `..._and_claim` calls: timestamps are text). */
interface ClaimedRow extends Omit<StepTaskRecord, "msg_id"> {
  msg_id: number | string;
  read_ct: number;
  enqueued_at: Date | string;
  vt: Date | string;
  message: TaskMessage;
  headers: Json | null;
  attempt: number;
}

function startedTask(row: ClaimedRow): StartedTask {
  const msgId = Number(row.msg_id);
  return {
    task: {
      flow_slug: row.flow_slug,
      run_id: row.run_id,
      step_slug: row.step_slug,
      input: row.input,
      msg_id: msgId,
      task_index: row.task_index,
      flow_input: row.flow_input,
    },
    message: {
      msg_id: msgId,
      read_ct: row.read_ct,
      enqueued_at: new Date(row.enqueued_at),
      vt: new Date(row.vt),
      message: row.message,
      headers: row.headers,
    },
    attempt: row.attempt,
  };
}

export interface TaskKey {
  runId: string;
  stepSlug: string;
  taskIndex: number;
}

/**
 * A completion to report: the output as a value (checked and serialised here), or as JSON
 * text the caller already checked (a worker, which words its own error for a bad output).
 */
export type TaskCompletion = TaskKey & ({ output: unknown } | { outputJson: string });

/** What a batch of completions tells about each task after its report. */
export type CompletionResult = Pick<StepTaskRow, "status" | "error_message">;

function outputText(completion: TaskCompletion): string {
  return "outputJson" in completion
    ? completion.outputJson
    : toJsonText(completion.output, `output of step "${completion.stepSlug}"`);
}

/** `pgflow.complete_task`'s arguments (run_id, step_slug, task_index, output) for one report. */
function completeTaskArgs(completion: TaskCompletion) {
  return [
    literal.uuid(completion.runId, "run id"),
    literal.text(completion.stepSlug, "step slug"),
    literal.int(completion.taskIndex, "task index"),
    literal.jsonb(outputText(completion), "output"),
  ] as const;
}

export async function completeTask(sql: Sql, args: TaskCompletion): Promise<StepTaskRow> {
  const [runId, stepSlug, taskIndex, output] = completeTaskArgs(args);
  const [row] = await oneTrip(sql)<StepTaskRow[]>`
    select * from pgflow.complete_task(${runId}, ${stepSlug}, ${taskIndex}, ${output})`;
  return row;
}

/**
 * Completes many tasks in one statement (one round trip, one commit): a worker's way to keep
 * up with fast handlers. `pgflow.complete_tasks` locks the batch's runs in run id order (so
 * concurrent batches cannot deadlock) and completes map tasks set-based. All or nothing: if
 * one report raises, none is applied. Returns each task's status after its report, in the
 * order given.
 */
export async function completeTasks(
  sql: Sql,
  completions: readonly TaskCompletion[],
): Promise<CompletionResult[]> {
  if (completions.length === 0) return [];
  const run = oneTrip(sql);
  if (completions.length === 1) {
    // The plain call plans faster than the unnest form, and an idle worker sends one at a time.
    // Only the result comes back: the output could be large.
    const [runId, stepSlug, taskIndex, output] = completeTaskArgs(completions[0]);
    const [row] = await run<CompletionResult[]>`
      select status, error_message
      from pgflow.complete_task(${runId}, ${stepSlug}, ${taskIndex}, ${output})`;
    return [row];
  }
  const rows = await run<(CompletionResult & { ord: number })[]>`
    select ord, status, error_message from pgflow.complete_tasks(
      ${literal.uuidArray(completions.map((c) => c.runId), "run ids")},
      ${literal.textArray(completions.map((c) => c.stepSlug), "step slugs")},
      ${literal.intArray(completions.map((c) => c.taskIndex), "task indexes")},
      ${literal.jsonbArray(completions.map(outputText), "outputs")})`;
  return rows.map((row) => ({ status: row.status, error_message: row.error_message }));
}

/**
 * Completes a task and, in the same transaction, reads and starts up to `qty`
 * visible tasks of its flow (those the completion made ready included): one
 * round trip per DAG level for a worker with free slots.
 */
export async function completeTaskAndClaim(
  sql: Sql,
  args: TaskCompletion & { workerId: string; vt: number; qty: number },
): Promise<{ result: CompletionResult; claimed: StartedTask[] }> {
  const [row] = await oneTrip(sql)<{ outcome: ClaimOutcome }[]>`
    select pgflow.complete_task_and_claim(
      run_id => ${literal.uuid(args.runId, "run id")},
      step_slug => ${literal.text(args.stepSlug, "step slug")},
      task_index => ${literal.int(args.taskIndex, "task index")},
      output => ${literal.jsonb(outputText(args), "output")},
      worker_id => ${literal.uuid(args.workerId, "worker id")},
      vt => ${literal.int(args.vt, "vt")},
      qty => ${literal.int(args.qty, "qty")}) as outcome`;
  const { status, error_message, claimed } = row.outcome;
  return { result: { status, error_message }, claimed: claimed.map(startedTask) };
}

/**
 * Completes a batch of tasks of one flow and, in the same transaction, reads and starts up to
 * `qty` visible tasks of that flow (`pgflow.complete_tasks_and_claim`): a busy worker reports
 * what it finished and gets its next tasks in one round trip.
 */
export async function completeTasksAndClaim(
  sql: Sql,
  completions: readonly TaskCompletion[],
  args: { flowSlug: string; workerId: string; vt: number; qty: number },
): Promise<{ results: CompletionResult[]; claimed: StartedTask[] }> {
  const [row] = await oneTrip(sql)<
    { outcome: { results: CompletionResult[]; claimed: ClaimedRow[] } }[]
  >`
    select pgflow.complete_tasks_and_claim(
      flow_slug => ${literal.text(args.flowSlug, "flow slug")},
      run_ids => ${literal.uuidArray(completions.map((c) => c.runId), "run ids")},
      step_slugs => ${literal.textArray(completions.map((c) => c.stepSlug), "step slugs")},
      task_indexes => ${literal.intArray(completions.map((c) => c.taskIndex), "task indexes")},
      outputs => ${literal.jsonbArray(completions.map(outputText), "outputs")},
      worker_id => ${literal.uuid(args.workerId, "worker id")},
      vt => ${literal.int(args.vt, "vt")},
      qty => ${literal.int(args.qty, "qty")}) as outcome`;
  return { results: row.outcome.results, claimed: row.outcome.claimed.map(startedTask) };
}

/** What `pgflow.complete_task_and_claim` returns (jsonb). */
interface ClaimOutcome extends CompletionResult {
  claimed: ClaimedRow[];
}

/**
 * Reports a failed attempt. With `attempt` (what a worker passes), `fail_task_attempt`: a
 * report delivered twice cannot fail the task's next attempt.
 */
export async function failTask(
  sql: Sql,
  args: TaskKey & { errorMessage: string; attempt?: number },
): Promise<StepTaskRow> {
  // StepTaskRow's columns: a map task's stored element (its input) need not travel back.
  const columns = sql`flow_slug, run_id, step_slug, message_id, task_index, status, attempts_count,
    error_message, output, last_worker_id, queued_at, started_at, completed_at, failed_at,
    cancelled_at`;
  const [row] = args.attempt === undefined
    ? await sql<StepTaskRow[]>`
      select ${columns} from pgflow.fail_task(
        run_id => ${args.runId}::uuid,
        step_slug => ${args.stepSlug},
        task_index => ${args.taskIndex}::int,
        error_message => ${args.errorMessage})`
    : await sql<StepTaskRow[]>`
      select ${columns} from pgflow.fail_task_attempt(
        run_id => ${args.runId}::uuid,
        step_slug => ${args.stepSlug},
        task_index => ${args.taskIndex}::int,
        attempt => ${args.attempt}::int,
        error_message => ${args.errorMessage})`;
  return row;
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
