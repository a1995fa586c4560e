-- Release 002: a drop-in for pgflow. Its workers (0.10 and 0.12+) run on this
-- core, its SQL behaves as pgflow's where callers can tell, and a database
-- where pgflow is installed is taken over in place (release 001 set pgflow's
-- schema aside as pgflow_pre_edgeflow; this copies what it holds).

------------------------------------------------------------------------------
-- Behaviour shared with pgflow
------------------------------------------------------------------------------

-- max_attempts 0 is pgflow's "one attempt, no retry".
alter table pgflow.flows
  drop constraint flows_max_attempts_range,
  add constraint flows_max_attempts_range check (opt_max_attempts between {{MIN_MAX_ATTEMPTS}} and {{MAX_MAX_ATTEMPTS}});
alter table pgflow.steps
  drop constraint steps_max_attempts_range,
  add constraint steps_max_attempts_range check (opt_max_attempts between {{MIN_MAX_ATTEMPTS}} and {{MAX_MAX_ATTEMPTS}});

-- The open tasks of a failed run end 'cancelled' (pgflow 0.15.1's status).
alter table pgflow.step_tasks
  drop constraint step_tasks_status_is_known,
  add constraint step_tasks_status_is_known
    check (status in ('queued', 'started', 'completed', 'failed', 'cancelled'));
-- Release 001 closed them as 'failed' with a "cancelled: ..." message.
update pgflow.step_tasks t
   set status = 'cancelled', failed_at = null
  from pgflow.runs r
 where r.run_id = t.run_id and r.status = 'failed' and t.status = 'failed'
   and t.error_message like 'cancelled: run failed at step %';

-- pgflow 0.12+ workers hand the run's input to root steps from this column.
alter type pgflow.step_task_record add attribute flow_input jsonb;

-- Signatures whose result changes (recreated by the engine files below):
-- set_vt_batch returns pgflow's columns, ensure_workers pgflow's
-- (function_name, invoked, request_id), prune_data_older_than nothing (pgflow's
-- documented signature; the counts moved to prune_finished_data).
drop function pgflow.set_vt_batch(text, bigint[], int[]);
drop function pgflow.ensure_workers(interval);
drop function pgflow.prune_data_older_than(interval);

------------------------------------------------------------------------------
-- Step conditions and skips (pgflow 0.14). Placed before the takeover below,
-- which copies pgflow's condition columns and skipped step states.
------------------------------------------------------------------------------

-- A step runs only when its input contains required_input_pattern and does not
-- contain forbidden_input_pattern (jsonb @>); when_unmet decides what an unmet
-- condition does, when_exhausted what a task out of attempts does.
alter table pgflow.steps
  add column if not exists required_input_pattern jsonb,
  add column if not exists forbidden_input_pattern jsonb,
  add column if not exists when_unmet text not null default 'skip',
  add column if not exists when_exhausted text not null default 'fail',
  drop constraint if exists steps_required_input_pattern_is_object,
  add constraint steps_required_input_pattern_is_object
    check (required_input_pattern is null or jsonb_typeof(required_input_pattern) = 'object'),
  drop constraint if exists steps_forbidden_input_pattern_is_object,
  add constraint steps_forbidden_input_pattern_is_object
    check (forbidden_input_pattern is null or jsonb_typeof(forbidden_input_pattern) = 'object'),
  drop constraint if exists steps_when_unmet_is_known,
  add constraint steps_when_unmet_is_known check (when_unmet in ('fail', 'skip', 'skip-cascade')),
  drop constraint if exists steps_when_exhausted_is_known,
  add constraint steps_when_exhausted_is_known check (when_exhausted in ('fail', 'skip', 'skip-cascade'));

-- A skipped step never runs (or stops running): skip_reason says why.
alter table pgflow.step_states
  add column if not exists skip_reason text,
  add column if not exists skipped_at timestamptz,
  drop constraint if exists step_states_status_is_known,
  add constraint step_states_status_is_known
    check (status in ('created', 'started', 'completed', 'failed', 'cancelled', 'skipped')),
  drop constraint if exists step_states_skip_reason_matches,
  add constraint step_states_skip_reason_matches check (
    (status = 'skipped') = (skip_reason is not null)
    and (status = 'skipped') = (skipped_at is not null)),
  drop constraint if exists step_states_skip_reason_is_known,
  add constraint step_states_skip_reason_is_known
    check (skip_reason in ('condition_unmet', 'handler_failed', 'dependency_skipped'));

-- add_step gains pgflow 0.14's named arguments (recreated by the engine file).
drop function if exists pgflow.add_step(text, text, text[], int, int, int, int, text);

------------------------------------------------------------------------------
-- Taking over a pgflow installation
------------------------------------------------------------------------------

-- Grants that pgflow's objects had, applied to edgeflow's objects of the same
-- name by the last engine file (sql/engine/switch_grants.sql), once every
-- function exists and the release's revokes have run.
create table pgflow.switch_grants (
  object_kind text not null,
  object_name text not null,
  grantee text not null,
  privilege text not null,
  grantable boolean not null,
  constraint switch_grants_kind_is_known check (object_kind in ('schema', 'table', 'sequence', 'function'))
);
revoke all on pgflow.switch_grants from public;

do $$
declare
  v_old oid := to_regnamespace('pgflow_pre_edgeflow');
  v_blockers text;
begin
  if v_old is null then
    return;
  end if;

  create temporary table pg_temp.switch_columns on commit drop as
    select table_name::text, column_name::text
    from information_schema.columns where table_schema = 'pgflow_pre_edgeflow';

  -- Definitions. Options outside edgeflow's bounds are clamped to them.
  insert into pgflow.flows (flow_slug, opt_max_attempts, opt_base_delay, opt_timeout, created_at)
  select f.flow_slug,
         least(greatest(f.opt_max_attempts, {{MIN_MAX_ATTEMPTS}}), {{MAX_MAX_ATTEMPTS}}),
         least(greatest(f.opt_base_delay, {{MIN_BASE_DELAY}}), {{MAX_BASE_DELAY}}),
         least(greatest(f.opt_timeout, {{MIN_TIMEOUT}}), {{MAX_TIMEOUT}}),
         f.created_at
  from pgflow_pre_edgeflow.flows f;

  execute format($sql$
    insert into pgflow.steps (flow_slug, step_slug, step_type, step_index, deps_count,
                              opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay, created_at,
                              required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted)
    select s.flow_slug, s.step_slug, s.step_type, s.step_index, s.deps_count,
           least(greatest(s.opt_max_attempts, {{MIN_MAX_ATTEMPTS}}), {{MAX_MAX_ATTEMPTS}}),
           least(greatest(s.opt_base_delay, {{MIN_BASE_DELAY}}), {{MAX_BASE_DELAY}}),
           least(greatest(s.opt_timeout, {{MIN_TIMEOUT}}), {{MAX_TIMEOUT}}),
           least(greatest(%s, {{MIN_START_DELAY}}), {{MAX_START_DELAY}}),
           s.created_at, %s
    from pgflow_pre_edgeflow.steps s$sql$,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'steps' and column_name = 'opt_start_delay')
         then 's.opt_start_delay' else 'null::int' end,
    -- Step conditions arrived in pgflow 0.14.
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'steps' and column_name = 'when_exhausted')
         then 's.required_input_pattern, s.forbidden_input_pattern, s.when_unmet, s.when_exhausted'
         else 'null::jsonb, null::jsonb, ''skip'', ''fail''' end);

  insert into pgflow.deps (flow_slug, dep_slug, step_slug, created_at)
  select d.flow_slug, d.dep_slug, d.step_slug, d.created_at from pgflow_pre_edgeflow.deps d;

  -- Runs, their step states and tasks, as they stand: runs in progress go on
  -- under edgeflow's worker, their messages stay in pgmq's queues.
  insert into pgflow.runs (run_id, flow_slug, status, input, output, remaining_steps,
                           started_at, completed_at, failed_at)
  select r.run_id, r.flow_slug, r.status, r.input, r.output, r.remaining_steps,
         r.started_at, r.completed_at, r.failed_at
  from pgflow_pre_edgeflow.runs r;

  execute format($sql$
    insert into pgflow.step_states (flow_slug, run_id, step_slug, status, remaining_deps, initial_tasks,
                                    remaining_tasks, error_message, created_at, started_at, completed_at, failed_at,
                                    skip_reason, skipped_at)
    select ss.flow_slug, ss.run_id, ss.step_slug, ss.status, ss.remaining_deps, %s,
           ss.remaining_tasks, %s, ss.created_at, ss.started_at, ss.completed_at, ss.failed_at, %s
    from pgflow_pre_edgeflow.step_states ss
    join pgflow_pre_edgeflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug$sql$,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'step_states' and column_name = 'initial_tasks')
         then 'ss.initial_tasks'
         -- Before map steps every step had one task.
         else 'case when ss.status = ''created'' then 1 else coalesce(ss.remaining_tasks, 1) end' end,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'step_states' and column_name = 'error_message')
         then 'ss.error_message' else 'null::text' end,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'step_states' and column_name = 'skip_reason')
         then 'ss.skip_reason, ss.skipped_at' else 'null::text, null::timestamptz' end);

  execute format($sql$
    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, message_id, task_index, status, attempts_count,
                                   error_message, output, last_worker_id, queued_at, started_at,
                                   completed_at, failed_at)
    select t.flow_slug, t.run_id, t.step_slug, t.message_id, t.task_index, t.status, t.attempts_count,
           t.error_message, t.output, %s, t.queued_at, %s, t.completed_at, t.failed_at
    from pgflow_pre_edgeflow.step_tasks t$sql$,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'step_tasks' and column_name = 'last_worker_id')
         then 't.last_worker_id' else 'null::uuid' end,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'step_tasks' and column_name = 'started_at')
         then 't.started_at' else 'null::timestamptz' end);

  -- pgflow left the open tasks of failed runs queued: cancel them, and take
  -- their messages out of the queues so no worker reads them again.
  perform pgmq.archive(c.flow_slug, c.msg_ids)
  from (
    select t.flow_slug, array_agg(t.message_id) as msg_ids
    from pgflow.step_tasks t join pgflow.runs r on r.run_id = t.run_id
    where r.status = 'failed' and t.status in ('queued', 'started') and t.message_id is not null
    group by t.flow_slug) c;
  update pgflow.step_tasks t
     set status = 'cancelled', error_message = coalesce(t.error_message, 'cancelled: the run failed')
    from pgflow.runs r
   where r.run_id = t.run_id and r.status = 'failed' and t.status in ('queued', 'started');

  -- Workers and the functions ensure_workers keeps alive.
  execute format($sql$
    insert into pgflow.workers (worker_id, queue_name, function_name, started_at, last_heartbeat_at,
                                deprecated_at, stopped_at)
    select w.worker_id, w.queue_name, w.function_name, w.started_at, w.last_heartbeat_at, %s, %s
    from pgflow_pre_edgeflow.workers w$sql$,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'workers' and column_name = 'deprecated_at')
         then 'w.deprecated_at' else 'null::timestamptz' end,
    case when exists (select 1 from pg_temp.switch_columns where table_name = 'workers' and column_name = 'stopped_at')
         then 'w.stopped_at' else 'null::timestamptz' end);

  if to_regclass('pgflow_pre_edgeflow.worker_functions') is not null then
    insert into pgflow.worker_functions (function_name, enabled, debounce, last_invoked_at, created_at, updated_at)
    select wf.function_name, wf.enabled, wf.debounce, wf.last_invoked_at, wf.created_at, wf.updated_at
    from pgflow_pre_edgeflow.worker_functions wf;
  end if;

  -- The grants users gave on pgflow's schema, tables, sequences and functions
  -- (pgflow's migrations grant nothing). PUBLIC's are not carried over: edgeflow
  -- revokes PUBLIC by design (README, "Grants").
  insert into pgflow.switch_grants (object_kind, object_name, grantee, privilege, grantable)
  select 'schema', 'pgflow', pg_get_userbyid(a.grantee), a.privilege_type, a.is_grantable
  from pg_namespace n, aclexplode(n.nspacl) a
  where n.oid = v_old and a.grantee <> 0 and a.grantee <> n.nspowner
  union all
  select case when c.relkind = 'S' then 'sequence' else 'table' end,
         format('pgflow.%I', c.relname), pg_get_userbyid(a.grantee), a.privilege_type, a.is_grantable
  from pg_class c, aclexplode(c.relacl) a
  where c.relnamespace = v_old and c.relkind in ('r', 'p', 'v', 'm', 'S')
    and a.grantee <> 0 and a.grantee <> c.relowner
  union all
  select 'function',
         format('pgflow.%I(%s)', p.proname,
                replace(oidvectortypes(p.proargtypes), 'pgflow_pre_edgeflow.', 'pgflow.')),
         pg_get_userbyid(a.grantee), a.privilege_type, a.is_grantable
  from pg_proc p, aclexplode(p.proacl) a
  where p.pronamespace = v_old and a.grantee <> 0 and a.grantee <> p.proowner;

  -- pgflow's cron jobs (pgflow_ensure_workers, pgflow_cleanup_logs,
  -- pgflow_requeue_stalled_tasks) call functions of the same names here and
  -- stay as the user scheduled them; edgeflow's own keep-alive job would
  -- duplicate pgflow_ensure_workers.
  if to_regclass('cron.job') is not null then
    perform cron.unschedule('edgeflow_ensure_workers')
    where exists (select 1 from cron.job where jobname = 'pgflow_ensure_workers')
      and exists (select 1 from cron.job where jobname = 'edgeflow_ensure_workers');
  end if;

  -- The old schema goes, unless objects outside it depend on it (a user's view
  -- of pgflow.runs, a foreign key to it): then it stays, with a warning naming them.
  select string_agg(distinct pg_describe_object(d.classid, d.objid, d.objsubid), '; ')
    into v_blockers
  from pg_depend d
  where d.deptype = 'n'
    and (d.refclassid, d.refobjid) in (
      select 'pg_class'::regclass, oid from pg_class where relnamespace = v_old
      union all select 'pg_proc'::regclass, oid from pg_proc where pronamespace = v_old
      union all select 'pg_type'::regclass, oid from pg_type where typnamespace = v_old)
    and coalesce(
      case d.classid
        when 'pg_class'::regclass then (select relnamespace from pg_class where oid = d.objid)
        when 'pg_proc'::regclass then (select pronamespace from pg_proc where oid = d.objid)
        when 'pg_type'::regclass then (select typnamespace from pg_type where oid = d.objid)
        when 'pg_rewrite'::regclass then (select c.relnamespace from pg_rewrite r join pg_class c on c.oid = r.ev_class where r.oid = d.objid)
        when 'pg_constraint'::regclass then (select connamespace from pg_constraint where oid = d.objid)
        when 'pg_trigger'::regclass then (select c.relnamespace from pg_trigger t join pg_class c on c.oid = t.tgrelid where t.oid = d.objid)
        when 'pg_attrdef'::regclass then (select c.relnamespace from pg_attrdef a join pg_class c on c.oid = a.adrelid where a.oid = d.objid)
      end, v_old) <> v_old;
  if v_blockers is null then
    drop schema pgflow_pre_edgeflow cascade;
  else
    raise warning 'edgeflow took pgflow''s data over, but kept schema pgflow_pre_edgeflow because other objects depend on it: %', v_blockers
      using hint = 'Point those objects at schema pgflow, then DROP SCHEMA pgflow_pre_edgeflow CASCADE.';
  end if;
end
$$;

-- Advancing the engine's clock also moves the times pgmq stamped on
-- queued and archived messages (enqueued_at, archived_at), so retention judges
-- archived messages by engine time (pgflow._queue_time). Engine functions only.

-- Release 002: operating runs (cancel_run, resume_run, restart_run in
-- sql/engine/run_operations.sql). A run, its open steps and their open tasks
-- can end 'cancelled'; a run remembers which run it restarts.
-- Columns are added "if not exists" and constraints replaced whole, so this
-- file composes with other upgrades that touch the same statuses.

alter table pgflow.runs
  add column if not exists cancelled_at timestamptz,
  -- Pruning the original keeps its restarts: the link is cleared, not the run.
  add column if not exists restart_of_run_id uuid references pgflow.runs (run_id) on delete set null;

alter table pgflow.runs
  drop constraint if exists runs_status_is_known,
  add constraint runs_status_is_known check (status in ('started', 'completed', 'failed', 'cancelled')),
  drop constraint if exists runs_cancelled_at_matches,
  add constraint runs_cancelled_at_matches check ((status = 'cancelled') = (cancelled_at is not null));

create index if not exists runs_restart_of_idx on pgflow.runs (restart_of_run_id)
  where restart_of_run_id is not null;

-- Retention scans finished runs by age; a cancelled run is finished at cancelled_at.
drop index if exists pgflow.runs_finished_idx;
create index runs_finished_idx on pgflow.runs (coalesce(completed_at, failed_at, cancelled_at))
  where status <> 'started';

alter table pgflow.step_states
  add column if not exists cancelled_at timestamptz,
  drop constraint if exists step_states_status_is_known,
  add constraint step_states_status_is_known
    check (status in ('created', 'started', 'completed', 'failed', 'cancelled', 'skipped'));

alter table pgflow.step_tasks
  add column if not exists cancelled_at timestamptz,
  drop constraint if exists step_tasks_status_is_known,
  add constraint step_tasks_status_is_known
    check (status in ('queued', 'started', 'completed', 'failed', 'cancelled'));

-- complete_task_and_claim returns each claimed task's "attempt" (1 = the first), so a
-- handler knows which attempt it is on every claiming path (engine change only).

-- The inspector's list of runs, newest first, paged by started_at and the run
-- id: each filter the page offers is an index range scan that stops after one
-- page, however many runs there are: all runs, by status, by flow
-- (runs_flow_started_idx gains the tie-break), by flow and status.
-- The status filters index every run but completed ones (most runs end completed,
-- and each index a run's completion writes to costs every run): the page finds
-- completed runs by scanning the newest runs, almost all of them completed.
-- The tie-break is the id's bytes (uuid_send: 16 bytes, in the uuid's order),
-- not the id: a lookup by id cannot use these indexes. Planned while runs held
-- one run, lookups by id took one of them (the id in any column matches) and
-- read all of it on each lookup.
create index if not exists runs_started_idx on pgflow.runs
  (started_at, (pg_catalog.uuid_send(run_id)));
create index if not exists runs_status_started_idx on pgflow.runs
  (status, started_at, (pg_catalog.uuid_send(run_id)))
  where status <> 'completed';
create index if not exists runs_flow_status_started_idx on pgflow.runs
  (flow_slug, status, started_at, (pg_catalog.uuid_send(run_id)))
  where status <> 'completed';
drop index if exists pgflow.runs_flow_started_idx;
create index runs_flow_started_idx on pgflow.runs
  (flow_slug, started_at, (pg_catalog.uuid_send(run_id)));

-- The trust check of objects outside the schema is one helper of both owners
-- (pgflow._trusted_owners); the one-role helper it replaces goes.
drop function if exists pgflow._is_trusted_role(oid);

-- What read_and_start_tasks hands a worker: a started task (step_task_record's
-- columns), its message, and which attempt this is (1 = the first).
create type pgflow.claimed_task as (
  flow_slug text,
  run_id uuid,
  step_slug text,
  input jsonb,
  msg_id bigint,
  task_index int,
  flow_input jsonb,
  read_ct int,
  enqueued_at timestamptz,
  vt timestamptz,
  message jsonb,
  headers jsonb,
  attempt int
);

-- Room in each page for updates that change no indexed column (a run's count of
-- remaining steps, a map step's count of remaining tasks): such an update stays
-- on its page and writes no index entry (a HOT update).
alter table pgflow.runs set (fillfactor = 80);
alter table pgflow.step_states set (fillfactor = 80);

-- A run's ready steps are found through the primary key (run_id leads it; a run
-- has one state per step, not per task). step_states_ready_idx named status and
-- remaining_deps in its predicate, which kept every update of a step state from
-- staying on its page: none of a diamond's ten was HOT, all are without it.
drop index if exists pgflow.step_states_ready_idx;

-- Closing a run's open tasks (rare: a failed or cancelled run) reads the run's
-- tasks through the primary key. step_tasks_open_idx, on run_id alone, cost
-- every task start an index entry and misled the planner: with fresh
-- statistics it chose it for a batch of reports and read every open task of a
-- wide map once per report.
drop index if exists pgflow.step_tasks_open_idx;

-- The started-tasks index serves only the stall sweep, which states both
-- conditions. With "status = 'started'" alone it was a candidate for every
-- statement that finds tasks by key and also tests that status (a batch of
-- reports, a claim's stall check); on statistics from before a wide map's
-- tasks were inserted the planner took it as nearly empty and read every
-- started task of the map once per batch.
drop index if exists pgflow.step_tasks_started_idx;
create index step_tasks_started_idx on pgflow.step_tasks (started_at)
  where status = 'started' and started_at is not null;

-- A map task's element of the array it maps over, written when the map starts,
-- so that a claim reads only its own tasks' elements: reading the array, stored
-- compressed out of line, cost every claim in proportion to the map's width.
-- Cleared when the task completes. NULL for a map over a map's outputs (its
-- task reads its own source task) and for tasks created before this release,
-- whose claims read the array as before.
alter table pgflow.step_tasks add column if not exists element jsonb;
