/**
 * The fault suite's flow: split -> square (a map, FAN_OUT tasks) -> total. Every handler first
 * records its execution (run, step, task index, attempt, when the attempt started) in
 * `faults.executions`, a table of the suite's own, so re-executions are counted exactly; the
 * outputs are a function of the run's input, so every run's output can be checked.
 */
import { Flow } from "../../src/dsl/mod.ts";
import type { StepContext } from "../../src/dsl/mod.ts";
import type { Sql } from "../../src/db/connect.ts";

export const FAULT_FLOW_SLUG = "faults_fanout";
/** Tasks of the map step per run; a run has FAN_OUT + 2 tasks. */
export const FAN_OUT = 4;
export const TASKS_PER_RUN = FAN_OUT + 2;
/** Short, so that an attempt lost with its worker comes back quickly (timeout + 2 s margin). */
export const STEP_TIMEOUT_SECONDS = 2;
/** How long each handler works: long enough to keep the worker's slots full. */
export const HANDLER_MS = 150;

export interface FaultInput {
  n: number;
}

export interface FaultOutput {
  total: { n: number; sum: number };
}

export const faultFlow = new Flow<FaultInput>({
  slug: FAULT_FLOW_SLUG,
  // A lost attempt counts as failed; retry it at once, and leave room for more than one fault.
  maxAttempts: 5,
  baseDelay: 0,
  timeout: STEP_TIMEOUT_SECONDS,
})
  .array({ slug: "split" }, async ({ run }, context) => {
    await work(context);
    return Array.from({ length: FAN_OUT }, (_, i) => run.n * 100 + i);
  })
  .map({ slug: "square", array: "split" }, async (x, context) => {
    await work(context);
    return x * x;
  })
  .step({ slug: "total", dependsOn: ["square"] }, async ({ run, square }, context) => {
    await work(context);
    return { n: run.n, sum: square.reduce((sum, x) => sum + x, 0) };
  });

/** What run `n` must output. */
export function expectedOutput(n: number): FaultOutput {
  let sum = 0;
  for (let i = 0; i < FAN_OUT; i++) sum += (n * 100 + i) ** 2;
  return { total: { n, sum } };
}

/** The suite's own tables, created by the harness (never part of the engine's migrations). */
export async function createExecutionsTable(sql: Sql): Promise<void> {
  await sql.unsafe(`
    create schema faults;
    create table faults.executions (
      id bigserial primary key,
      run_id uuid not null,
      step_slug text not null,
      task_index int not null,
      attempt int not null,
      attempt_started_at timestamptz not null,
      worker_pid int not null,
      recorded_at timestamptz not null default clock_timestamp()
    );
    -- The tasks in flight when the fault hit (bench/faults/measure.ts snapshots them).
    create table faults.in_flight (
      run_id uuid, step_slug text, task_index int, attempt int,
      primary key (run_id, step_slug, task_index)
    );`);
}

/** Records this execution (its first side effect, as a user's handler's would be), then works. */
async function work(context: StepContext): Promise<void> {
  const { run_id, step_slug, task_index } = context.stepTask;
  // A database that is down (or coming back) refuses the record: retry until it lands or the
  // step's timeout aborts the handler (the attempt then never ran, as far as anyone can see).
  while (true) {
    try {
      await context.sql`
        insert into faults.executions
          (run_id, step_slug, task_index, attempt, attempt_started_at, worker_pid)
        select t.run_id, t.step_slug, t.task_index, t.attempts_count, t.started_at, ${Deno.pid}
        from pgflow.step_tasks t
        where t.run_id = ${run_id} and t.step_slug = ${step_slug} and t.task_index = ${task_index}`;
      break;
    } catch (error) {
      if (context.signal.aborted) throw error;
      await delay(100, context.signal);
    }
  }
  await delay(HANDLER_MS, context.signal);
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", abort, { once: true });
  });
}
