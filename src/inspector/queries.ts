/**
 * What the inspector reads, straight from the pgflow tables: flows with their steps and
 * dependencies, a page of runs (keyset pagination on started_at, then the run id's bytes; the
 * indexes of release 002 keep every filter combination an index scan), and one run with its
 * steps and tasks. Rows come back as JSON built in SQL, so columns added by later releases (a run's
 * cancelled_at, restart_of_run_id) reach the page without changes here.
 */
import type { Sql } from "../db/connect.ts";
import type { Json } from "../db/types.ts";

export interface FlowStep {
  step_slug: string;
  step_type: "single" | "map";
  step_index: number;
  deps: string[];
}

export interface FlowSummary {
  flow_slug: string;
  created_at: string;
  steps: FlowStep[];
}

const STEPS_OF_FLOW = (sql: Sql) =>
  sql`coalesce((
    select jsonb_agg(jsonb_build_object(
             'step_slug', s.step_slug, 'step_type', s.step_type, 'step_index', s.step_index,
             'deps', coalesce((select jsonb_agg(d.dep_slug order by d.dep_slug)
                               from pgflow.deps d
                               where d.flow_slug = s.flow_slug and d.step_slug = s.step_slug),
                              '[]'::jsonb))
           order by s.step_index)
    from pgflow.steps s where s.flow_slug = f.flow_slug), '[]'::jsonb)`;

export async function listFlows(sql: Sql): Promise<FlowSummary[]> {
  const rows = await sql<{ flow: FlowSummary }[]>`
    select jsonb_build_object('flow_slug', f.flow_slug, 'created_at', f.created_at,
                              'steps', ${STEPS_OF_FLOW(sql)}) as flow
    from pgflow.flows f order by f.flow_slug`;
  return rows.map((row) => row.flow);
}

export async function getFlow(sql: Sql, flowSlug: string): Promise<FlowSummary | undefined> {
  const [row] = await sql<{ flow: FlowSummary }[]>`
    select jsonb_build_object('flow_slug', f.flow_slug, 'created_at', f.created_at,
                              'steps', ${STEPS_OF_FLOW(sql)}) as flow
    from pgflow.flows f where f.flow_slug = ${flowSlug}`;
  return row?.flow;
}

export interface RunListItem {
  run_id: string;
  flow_slug: string;
  status: string;
  remaining_steps: number;
  started_at: string;
  finished_at: string | null;
}

/** A position in the list of runs: a run's started_at (microseconds, UTC) and its id. */
export interface RunCursor {
  startedAt: string;
  runId: string;
}

export interface RunPageQuery {
  flow?: string;
  status?: string;
  /** Runs older than this position (the next page); else the newest runs. */
  before?: RunCursor;
  /** Runs newer than this position (the previous page). */
  after?: RunCursor;
  limit: number;
}

export interface RunPage {
  runs: RunListItem[];
  /** Cursor for the page of older runs, when there are any. */
  older: RunCursor | null;
  /** Cursor for the page of newer runs, when there are any. */
  newer: RunCursor | null;
}

interface RunListRow extends RunListItem {
  cursor_at: string;
}

/** The SQL of one page, newest first (or oldest first when reading `after`), for EXPLAIN too. */
export function runPageQuery(sql: Sql, query: RunPageQuery, limit: number) {
  const ascending = query.after !== undefined;
  const at = query.after ?? query.before;
  // The cursor goes in as text: a timestamptz parameter would pass through a JS Date and lose
  // its microseconds.
  return sql<RunListRow[]>`
    select r.run_id, r.flow_slug, r.status, r.remaining_steps, r.started_at,
           coalesce(r.completed_at, r.failed_at) as finished_at,
           to_char(r.started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at
    from pgflow.runs r
    where true
      ${query.flow === undefined ? sql`` : sql`and r.flow_slug = ${query.flow}`}
      ${
    query.status === undefined
      ? sql``
      : query.status === "completed"
      ? sql`and r.status = 'completed'`
      // Written out so that even a generic plan can use the status indexes, which leave
      // completed runs out.
      : sql`and r.status = ${query.status} and r.status <> 'completed'`
  }
      ${
    at === undefined ? sql`` : ascending
      ? sql`and (r.started_at, pg_catalog.uuid_send(r.run_id))
                > (${at.startedAt}::text::timestamptz, pg_catalog.uuid_send(${at.runId}::uuid))`
      : sql`and (r.started_at, pg_catalog.uuid_send(r.run_id))
                < (${at.startedAt}::text::timestamptz, pg_catalog.uuid_send(${at.runId}::uuid))`
  }
    order by ${
    ascending
      ? sql`r.started_at asc, pg_catalog.uuid_send(r.run_id) asc`
      : sql`r.started_at desc, pg_catalog.uuid_send(r.run_id) desc`
  }
    limit ${limit}`;
}

export async function listRuns(sql: Sql, query: RunPageQuery): Promise<RunPage> {
  const rows = [...await runPageQuery(sql, query, query.limit + 1)];
  const more = rows.length > query.limit;
  rows.splice(query.limit);
  if (query.after !== undefined) rows.reverse();
  const cursor = (row: RunListRow | undefined): RunCursor | null =>
    row ? { startedAt: row.cursor_at, runId: row.run_id } : null;
  const runs = rows.map(({ cursor_at: _, ...run }) => run);
  const reading = query.after !== undefined ? "newer" : "older";
  const olderExists = reading === "older" ? more : true;
  const newerExists = reading === "newer" ? more : query.before !== undefined;
  return {
    runs,
    older: olderExists ? cursor(rows.at(-1)) : null,
    newer: newerExists ? cursor(rows[0]) : null,
  };
}

export interface RunDetail {
  run: Record<string, Json>;
  steps: (Record<string, Json> & FlowStep & { status: string })[];
  tasks: Record<string, Json>[];
}

/** One run: its row, each step's definition and state, and each task with its input. */
export async function getRunDetail(sql: Sql, runId: string): Promise<RunDetail | undefined> {
  const [row] = await sql<{ detail: RunDetail }[]>`
    select jsonb_build_object(
      'run', to_jsonb(r),
      'steps', coalesce((
        select jsonb_agg(to_jsonb(ss) || jsonb_build_object(
                 'step_type', s.step_type, 'step_index', s.step_index,
                 'deps', coalesce((select jsonb_agg(d.dep_slug order by d.dep_slug)
                                   from pgflow.deps d
                                   where d.flow_slug = s.flow_slug and d.step_slug = s.step_slug),
                                  '[]'::jsonb))
               order by s.step_index)
        from pgflow.step_states ss
        join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
        where ss.run_id = r.run_id), '[]'::jsonb),
      'tasks', coalesce((
        -- A map task's stored element is its input, shown as such (mapInputs).
        select jsonb_agg((to_jsonb(t) - 'element') || jsonb_build_object('input', ${
    SINGLE_TASK_INPUT(sql)
  })
               order by s.step_index, t.task_index)
        from pgflow.step_tasks t
        join pgflow.steps s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
        where t.run_id = r.run_id), '[]'::jsonb)) as detail
    from pgflow.runs r where r.run_id = ${runId}::uuid`;
  if (row) fillMapInputs(row.detail);
  return row?.detail;
}

/**
 * A single step's task input as start_tasks hands it to the handler: the flow input under `run`
 * and each dependency's output under its slug. (NULL for a map task: fillMapInputs.)
 */
const SINGLE_TASK_INPUT = (sql: Sql) =>
  sql`case when s.step_type = 'single' then
      jsonb_build_object('run', r.input) || coalesce((
      select jsonb_object_agg(d.dep_slug,
               pgflow._step_output(r.run_id, d.dep_slug, ds.step_type))
      from pgflow.deps d
      join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
      where d.flow_slug = s.flow_slug and d.step_slug = s.step_slug), '{}'::jsonb) end`;

/**
 * Each map task's input: its element of the flow input (a root map), of its one dependency's
 * output (a single step), or that dependency's output of the same index (a map over a map). The
 * detail already holds all of them; in SQL, each task's `input -> i` fetched and decompressed the
 * whole array again (a map of 10,000 took 5.5 s to show).
 */
function fillMapInputs(detail: RunDetail): void {
  const steps = new Map(detail.steps.map((step) => [step.step_slug, step]));
  const outputs = new Map(
    detail.tasks.map((task) => [`${task.step_slug}/${task.task_index}`, task.output ?? null]),
  );
  for (const task of detail.tasks) {
    const step = steps.get(task.step_slug as string);
    if (step?.step_type !== "map") continue;
    const index = task.task_index as number;
    const [dep] = step.deps;
    if (dep !== undefined && steps.get(dep)?.step_type === "map") {
      task.input = outputs.get(`${dep}/${index}`) ?? null;
      continue;
    }
    const source = dep === undefined ? detail.run.input : outputs.get(`${dep}/0`);
    task.input = Array.isArray(source) ? source[index] ?? null : null;
  }
}

/** Whether events go to Supabase Realtime (then no pg_notify arrives and the page polls). */
export async function eventsGoToRealtime(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ realtime: boolean }[]>`
    select pgflow._trusted_function('realtime.send(jsonb,text,text,boolean)') is not null
      as realtime`;
  return row.realtime;
}
