/**
 * What a fault scenario reports once its runs are over: runs completed / lost / stuck, wrong
 * outputs, messages left, handler executions against tasks (re-executions, and whether each was
 * of an attempt in flight at the fault), and the recovery times.
 */
import type { Sql } from "../../src/db/connect.ts";
import { expectedOutput, FAULT_FLOW_SLUG } from "./flow.ts";
import type { WorkerLogLine } from "./worker.ts";

export interface FaultTimes {
  /** When the fault began (ms since the epoch). */
  faultAt: number;
  /**
   * When it had fully hit (the worker dead, the server stopped): an attempt that started
   * before this was in flight at the fault.
   */
  downAt: number;
  /** When it ended: the worker gone (kill), the database accepting connections again. */
  faultEnd: number;
}

export interface FaultReport {
  scenario: string;
  runs: number;
  tasks: number;
  completed: number;
  /** Runs that failed or never existed. */
  lost: number;
  /** Runs neither completed nor failed at the deadline. */
  stuck: number;
  wrongOutputs: number;
  /** Messages still in the flow's queue. */
  messagesLeft: number;
  /** Archived messages, and whether that is exactly one per task. */
  archived: number;
  archiveMatchesTasks: boolean;
  /** Tasks started and not finished at the fault. */
  inFlightAtFault: number;
  /** Recorded handler executions (an execution counts once its record commits). */
  executions: number;
  reExecutions: number;
  reExecutedTasks: number;
  /** Re-executions whose earlier attempt began after the fault hit: must be 0. */
  reExecutionsNotInFlight: number;
  /** Those tasks, for diagnosis: their executions and the engine's last error. */
  notInFlightDetails: unknown[];
  /** Completed tasks without a recorded execution: must be 0. */
  completedWithoutExecution: number;
  /** Attempts counted by the engine beyond one per task (lost attempts included). */
  extraAttempts: number;
  /** The first run's start -> the last run's completion. */
  allRunsMs: number;
  /** Fault began -> the last run completed. */
  faultToAllRunsCompleteMs: number;
  /** Fault ended -> the first task completed after it. */
  faultEndToFirstCompletionMs: number;
  /** Fault ended -> every task in flight at the fault was completed or claimed again. */
  faultEndToInFlightPickedUpMs: number;
  /** The task in flight at the fault that was picked up last. */
  lastPickedUp: unknown;
  /** The larger of the two above, checked against the bound. */
  recoveryMs: number;
  /** Step timeout + 2 s margin + one poll (maxPollSeconds). */
  recoveryBoundMs: number;
  /** Fault duration (faultEnd - faultAt). */
  faultMs: number;
  /** Warning and error lines the workers logged from the fault until the harness stopped them. */
  failureLogLines: Record<string, number>;
  /** The first few of those lines, with their fields. */
  failureLogSamples: WorkerLogLine[];
  /** How the (first) worker waited for work: "listen" or "long-poll". */
  idleMode: string;
}

/**
 * Saves which tasks are in flight now (the harness calls it at the fault); with `startedBefore`,
 * only those whose attempt began before then (a second look after the database came back).
 */
export async function snapshotInFlight(sql: Sql, startedBefore?: Date): Promise<number> {
  const rows = await sql`
    insert into faults.in_flight (run_id, step_slug, task_index, attempt)
    select run_id, step_slug, task_index, attempts_count
    from pgflow.step_tasks where flow_slug = ${FAULT_FLOW_SLUG} and status = 'started'
      and (${startedBefore ?? null}::timestamptz is null or started_at < ${startedBefore ?? null})
    on conflict do nothing
    returning 1`;
  return rows.length;
}

export async function measure(
  sql: Sql,
  args: {
    scenario: string;
    runs: number;
    times: FaultTimes;
    recoveryBoundMs: number;
    logs: WorkerLogLine[];
    /** When the harness began stopping the workers (later log lines are not the fault's). */
    stoppingAt: number;
  },
): Promise<FaultReport> {
  const { faultAt, downAt, faultEnd } = args.times;
  const down = new Date(downAt);
  const end = new Date(faultEnd);
  const [runs] = await sql`
    select count(*) filter (where status = 'completed')::int as completed,
           count(*) filter (where status = 'started')::int as stuck,
           count(*) filter (where status = 'failed')::int as failed,
           count(*)::int as total,
           (extract(epoch from max(completed_at)) * 1000)::float8 as last_completed,
           (extract(epoch from max(completed_at) - min(started_at)) * 1000)::float8 as all_runs
    from pgflow.runs where flow_slug = ${FAULT_FLOW_SLUG}`;
  const outputs = await sql<{ n: number; output: unknown }[]>`
    select (input->>'n')::int as n, output from pgflow.runs
    where flow_slug = ${FAULT_FLOW_SLUG} and status = 'completed'`;
  const wrongOutputs =
    outputs.filter((row) => JSON.stringify(row.output) !== JSON.stringify(expectedOutput(row.n)))
      .length;
  const [queue] = await sql.unsafe(`
    select (select count(*) from pgmq.q_${FAULT_FLOW_SLUG})::int as left,
           (select count(*) from pgmq.a_${FAULT_FLOW_SLUG})::int as archived,
           (select count(distinct msg_id) from pgmq.a_${FAULT_FLOW_SLUG})::int as archived_ids`);
  const [tasks] = await sql`
    select count(*)::int as tasks,
           (sum(attempts_count) - count(*))::int as extra_attempts,
           count(*) filter (where message_id is not null)::int as with_message
    from pgflow.step_tasks where flow_slug = ${FAULT_FLOW_SLUG}`;
  const [executions] = await sql`
    with per_task as (
      select run_id, step_slug, task_index, count(*) as n from faults.executions
      group by run_id, step_slug, task_index)
    select (select count(*) from faults.executions)::int as executions,
           coalesce(sum(n - 1), 0)::int as re_executions,
           count(*) filter (where n > 1)::int as re_executed_tasks
    from per_task`;
  // Every execution but a task's last must be of an attempt that began before the fault hit.
  const [notInFlight] = await sql`
    select count(*)::int as n from (
      select attempt_started_at,
             row_number() over (partition by run_id, step_slug, task_index order by attempt desc) as rank
      from faults.executions) e
    where rank > 1 and attempt_started_at >= ${down}`;
  const notInFlightDetails = await sql`
    select e.run_id, e.step_slug, e.task_index, t.attempts_count, t.error_message,
           json_agg(json_build_object('attempt', e.attempt, 'pid', e.worker_pid,
             'startedMsAfterDown', extract(epoch from e.attempt_started_at - ${down}::timestamptz) * 1000,
             'recordedMsAfterDown', extract(epoch from e.recorded_at - ${down}::timestamptz) * 1000)
             order by e.attempt) as executions
    from faults.executions e
    join pgflow.step_tasks t using (run_id, step_slug, task_index)
    where (e.run_id, e.step_slug, e.task_index) in (
      select run_id, step_slug, task_index from (
        select run_id, step_slug, task_index, attempt_started_at,
               row_number() over (partition by run_id, step_slug, task_index order by attempt desc) as rank
        from faults.executions) x
      where rank > 1 and attempt_started_at >= ${down})
    group by e.run_id, e.step_slug, e.task_index, t.attempts_count, t.error_message
    limit 5`;
  const [unrecorded] = await sql`
    select count(*)::int as n from pgflow.step_tasks t
    where t.flow_slug = ${FAULT_FLOW_SLUG} and t.status = 'completed'
      and not exists (select 1 from faults.executions e
        where e.run_id = t.run_id and e.step_slug = t.step_slug and e.task_index = t.task_index)`;
  const [inFlight] = await sql`select count(*)::int as n from faults.in_flight`;
  const [first] = await sql`
    select (extract(epoch from min(completed_at)) * 1000)::float8 as ms from pgflow.step_tasks
    where flow_slug = ${FAULT_FLOW_SLUG} and completed_at > ${end}`;
  // A task in flight at the fault is picked up when it is completed (its report got through)
  // or when a later attempt of it starts, whichever came first.
  const [pickedUp] = await sql`
    select (extract(epoch from picked) * 1000)::float8 as ms,
           json_build_object('run_id', run_id, 'step_slug', step_slug, 'task_index', task_index,
             'attempt', attempt, 'attempts', attempts_count, 'completedMsAfterFaultEnd',
             extract(epoch from completed_at - ${end}::timestamptz) * 1000, 'nextAttemptMsAfterFaultEnd',
             extract(epoch from next_attempt - ${end}::timestamptz) * 1000) as detail
    from (
      select f.*, t.completed_at, t.attempts_count, n.next_attempt,
             least(t.completed_at, n.next_attempt) as picked
      from faults.in_flight f
      join pgflow.step_tasks t using (run_id, step_slug, task_index)
      left join lateral (select min(e.attempt_started_at) as next_attempt from faults.executions e
        where e.run_id = f.run_id and e.step_slug = f.step_slug and e.task_index = f.task_index
          and e.attempt > f.attempt) n on true) p
    order by picked desc nulls last limit 1`;
  const firstMs = first.ms === null ? Infinity : first.ms - faultEnd;
  const pickedMs = pickedUp?.ms == null ? 0 : Math.max(0, pickedUp.ms - faultEnd);
  const failureLogLines: Record<string, number> = {};
  const failureLogSamples: WorkerLogLine[] = [];
  for (const line of args.logs) {
    if (line.t < faultAt || line.t >= args.stoppingAt) continue;
    if (line.level !== "warn" && line.level !== "error") continue;
    failureLogLines[line.msg] = (failureLogLines[line.msg] ?? 0) + 1;
    if (failureLogSamples.length < 5) failureLogSamples.push(line);
  }
  const started = args.logs.find((line) => line.msg === "worker started");
  return {
    scenario: args.scenario,
    runs: args.runs,
    tasks: tasks.tasks,
    completed: runs.completed,
    lost: args.runs - runs.completed - runs.stuck,
    stuck: runs.stuck,
    wrongOutputs,
    messagesLeft: queue.left,
    archived: queue.archived,
    archiveMatchesTasks: queue.archived === tasks.tasks && queue.archived_ids === tasks.tasks &&
      tasks.with_message === tasks.tasks,
    inFlightAtFault: inFlight.n,
    executions: executions.executions,
    reExecutions: executions.re_executions,
    reExecutedTasks: executions.re_executed_tasks,
    reExecutionsNotInFlight: notInFlight.n,
    notInFlightDetails: [...notInFlightDetails],
    completedWithoutExecution: unrecorded.n,
    extraAttempts: tasks.extra_attempts ?? 0,
    allRunsMs: runs.all_runs ?? Infinity,
    faultToAllRunsCompleteMs: runs.last_completed === null
      ? Infinity
      : runs.last_completed - faultAt,
    faultEndToFirstCompletionMs: firstMs,
    faultEndToInFlightPickedUpMs: pickedMs,
    lastPickedUp: pickedUp?.detail ?? null,
    recoveryMs: Math.max(firstMs, pickedMs),
    recoveryBoundMs: args.recoveryBoundMs,
    faultMs: faultEnd - faultAt,
    failureLogLines,
    failureLogSamples,
    idleMode: String(started?.fields.idle ?? "unknown"),
  };
}

/** The zeros every scenario must reach, as a list of what is wrong (empty when all hold). */
export function problems(report: FaultReport): string[] {
  const wrong: string[] = [];
  const expect = (what: string, actual: unknown, ok: boolean) => {
    if (!ok) wrong.push(`${what}: ${actual}`);
  };
  expect("runs lost", report.lost, report.lost === 0);
  expect("runs stuck", report.stuck, report.stuck === 0);
  expect("wrong outputs", report.wrongOutputs, report.wrongOutputs === 0);
  expect("messages left in the queue", report.messagesLeft, report.messagesLeft === 0);
  expect(
    `archived messages (tasks: ${report.tasks})`,
    report.archived,
    report.archiveMatchesTasks,
  );
  expect(
    "re-executions of attempts not in flight at the fault",
    report.reExecutionsNotInFlight,
    report.reExecutionsNotInFlight === 0,
  );
  expect(
    "completed tasks without a recorded execution",
    report.completedWithoutExecution,
    report.completedWithoutExecution === 0,
  );
  expect(
    `recovery ms (bound ${report.recoveryBoundMs})`,
    Math.round(report.recoveryMs),
    report.recoveryMs <= report.recoveryBoundMs,
  );
  return wrong;
}
