-- edgeflow SQL engine, release 002 (drop_in_and_run_operations).
-- Generated from sql/ by `deno task sql:build`; never edit: change sql/ and build a release.

-- ==== sql/upgrades/002_drop_in_and_run_operations.sql ====
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
  add constraint flows_max_attempts_range check (opt_max_attempts between 0 and 1000);
alter table pgflow.steps
  drop constraint steps_max_attempts_range,
  add constraint steps_max_attempts_range check (opt_max_attempts between 0 and 1000);

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
         least(greatest(f.opt_max_attempts, 0), 1000),
         least(greatest(f.opt_base_delay, 0), 86400),
         least(greatest(f.opt_timeout, 1), 86400),
         f.created_at
  from pgflow_pre_edgeflow.flows f;

  execute format($sql$
    insert into pgflow.steps (flow_slug, step_slug, step_type, step_index, deps_count,
                              opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay, created_at,
                              required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted)
    select s.flow_slug, s.step_slug, s.step_type, s.step_index, s.deps_count,
           least(greatest(s.opt_max_attempts, 0), 1000),
           least(greatest(s.opt_base_delay, 0), 86400),
           least(greatest(s.opt_timeout, 1), 86400),
           least(greatest(%s, 0), 604800),
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

-- ==== sql/engine/clock.sql ====
-- The engine's clock. Every engine function reads time through pgflow.now()
-- (the transaction's time) or pgflow.clock_now() (the statement's moment, for
-- comparisons with pgmq's visibility times), never through now() directly.
-- In production the offset is zero; tests move it with pgflow.advance_clock,
-- so retries, start delays, stall recovery and pruning are tested without
-- sleeping or rewriting rows.
--
-- How the engine's clock meets pgmq's: pgmq stamps and compares its times
-- (visibility, enqueueing, archiving) with the server's real clock. Advancing
-- the engine's clock by an interval also moves every time pgmq keeps for a
-- flow's messages back by the same interval, so a message due in 30 s of engine
-- time is due in 30 s of queue time too, a message archived a day ago in engine
-- time was archived a day ago in queue time, and deadlines judged on either
-- side agree. pgflow._queue_time converts an engine time to pgmq's clock.
-- PL/pgSQL, not SQL: a SQL function with a SET clause is planned again on every
-- call, and the engine asks for the time many times per task (see events.sql).
create or replace function pgflow.now()
returns timestamptz
language plpgsql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return now() + (select c.offset_by from pgflow.clock c);
end;
$$;

create or replace function pgflow.clock_now()
returns timestamptz
language plpgsql
volatile
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return clock_timestamp() + (select c.offset_by from pgflow.clock c);
end;
$$;

-- The moment on pgmq's clock (the server's real one, see above) that is
-- engine_time on the engine's clock: compare pgmq's stored times with this.
create or replace function pgflow._queue_time(engine_time timestamptz)
returns timestamptz
language plpgsql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return engine_time - (select c.offset_by from pgflow.clock c);
end;
$$;

-- Moves the engine's clock forward (tests only: never granted). Returns the
-- new engine time.
create or replace function pgflow.advance_clock(by_interval interval)
returns timestamptz
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_flow text;
begin
  if by_interval is null or by_interval < interval '0' then
    perform pgflow._raise_invalid(format(
      'advance_clock: by_interval must be a non-negative interval, got %s',
      coalesce(by_interval::text, 'NULL')));
  end if;
  update pgflow.clock set offset_by = offset_by + by_interval;
  for v_flow in select f.flow_slug from pgflow.flows f loop
    if to_regclass(format('pgmq.%I', 'q_' || lower(v_flow))) is not null then
      execute format('update pgmq.%I set vt = vt - $1, enqueued_at = enqueued_at - $1',
        'q_' || lower(v_flow)) using by_interval;
    end if;
    if to_regclass(format('pgmq.%I', 'a_' || lower(v_flow))) is not null then
      execute format(
        'update pgmq.%I set vt = vt - $1, enqueued_at = enqueued_at - $1, archived_at = archived_at - $1',
        'a_' || lower(v_flow)) using by_interval;
    end if;
  end loop;
  return pgflow.now();
end;
$$;

-- ==== sql/engine/errors.sql ====
-- Errors every engine function raises the same way: invalid input (22023)
-- and missing objects (P0002), with messages that name the call.
create or replace function pgflow._raise_invalid(message text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', message using errcode = 'invalid_parameter_value';
end;
$$;

create or replace function pgflow._no_such(what text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', what using errcode = 'no_data_found';
end;
$$;

-- The flow exists, else no_data_found naming the call (`what`) and the slug.
create or replace function pgflow._require_flow(what text, flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform 1 from pgflow.flows f where f.flow_slug = _require_flow.flow_slug;
  if not found then
    perform pgflow._no_such(format('%s: flow %s does not exist', what,
      coalesce(quote_literal(_require_flow.flow_slug), 'NULL')));
  end if;
end;
$$;

-- A call that is valid but not in the run's current state (55000), e.g.
-- resuming a run that is still running.
create or replace function pgflow._raise_state(message text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', message using errcode = 'object_not_in_prerequisite_state';
end;
$$;

-- ==== sql/engine/events.sql ====
-- Realtime events: every state change is announced on topic pgflow:run:<run_id>.

-- Code edgeflow calls outside its own schema (Supabase's realtime.send,
-- pg_net, Vault) runs with the rights of whoever changes state: the worker
-- (the database owner) or a SECURITY DEFINER function. On a server without
-- those components, a role with CREATE on the database could plant them, so
-- such an object is used only when it and its schema belong to a trusted role
-- (_trusted_owners):
-- a superuser (Supabase's supabase_admin owns realtime, net and vault), or the
-- owner of schema pgflow (whoever installed edgeflow).
create or replace function pgflow._trusted_owners(p_owner oid, p_schema_owner oid)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
  -- One query: every event asks (through _trusted_function). pg_roles (a view
  -- over two more catalogs) is read by key, and only for an owner that is not
  -- the owner of schema pgflow.
  return exists (
    select 1 from pg_catalog.pg_namespace s
    where s.nspname = 'pgflow'
      and (p_owner = s.nspowner
           or (select r.rolsuper from pg_catalog.pg_roles r where r.oid = p_owner))
      and (p_schema_owner = s.nspowner
           or (select r.rolsuper from pg_catalog.pg_roles r where r.oid = p_schema_owner)));
end;
$$;

-- The function with this signature, or NULL when it is missing or it or its
-- schema is owned by an untrusted role.
create or replace function pgflow._trusted_function(p_signature text)
returns regprocedure
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_function regprocedure := pg_catalog.to_regprocedure(p_signature);
begin
  if v_function is null then
    return null;
  end if;
  perform 1 from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  where p.oid = v_function and pgflow._trusted_owners(p.proowner, n.nspowner);
  return case when found then v_function end;
end;
$$;

-- The same for a table or view.
create or replace function pgflow._trusted_relation(p_name text)
returns regclass
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_relation regclass := pg_catalog.to_regclass(p_name);
begin
  if v_relation is null then
    return null;
  end if;
  perform 1 from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.oid = v_relation and pgflow._trusted_owners(c.relowner, n.nspowner);
  return case when found then v_relation end;
end;
$$;

-- Every state change of a run is broadcast on topic pgflow:run:<run_id>.
-- Supabase's realtime.send (owned by a trusted role) is used where it exists,
-- looked up per call so installing Realtime later needs no migration; its
-- authorization decides who receives the full payload. Elsewhere pg_notify
-- on a channel named like the topic, which any role may LISTEN to: those
-- notifications carry ids, slugs, statuses and timestamps only, never inputs,
-- outputs or error messages (read them with get_run_with_states).
-- Events of one transaction arrive in order. One event is _emit_each of one.
create or replace function pgflow._emit(run_id uuid, event text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit_each(array[_emit.run_id], array[_emit.event], array[_emit.payload]);
end;
$$;

-- Events in array order, with one trust check of realtime.send for them all:
-- a set-based caller (start_flows) emits thousands in one call, and the check
-- costs about as much as a send. An event is named run:<status> or
-- step:<slug>:<status> (slugs hold no colon); its body is {event, event_type
-- (run:<status> or step:<status>), run_id, status, step_slug for a step}
-- followed by its payload, whose keys win (run:resumed says status 'started').
create or replace function pgflow._emit_each(run_ids uuid[], events text[], payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
-- The pg_notify statement below takes arrays: one generic plan for it, made
-- once per session, whatever their lengths.
set plan_cache_mode = force_generic_plan
as $$
declare
  v_realtime boolean;
  v_event text;
  v_body jsonb;
  v_bodies jsonb[] := '{}';
begin
  if coalesce(cardinality(_emit_each.run_ids), 0) = 0 then
    return;
  end if;
  v_realtime := pgflow._trusted_function('realtime.send(jsonb,text,text,boolean)') is not null;
  -- The bodies in a loop of simple expressions; realtime.send, which runs a
  -- subtransaction per call, gains nothing from one statement.
  for i in 1 .. coalesce(cardinality(_emit_each.run_ids), 0) loop
    v_event := _emit_each.events[i];
    v_body := case when split_part(v_event, ':', 1) = 'step'
        then jsonb_build_object('event_type', 'step:' || split_part(v_event, ':', 3),
               'run_id', _emit_each.run_ids[i], 'step_slug', split_part(v_event, ':', 2),
               'status', split_part(v_event, ':', 3))
        else jsonb_build_object('event_type', v_event, 'run_id', _emit_each.run_ids[i],
               'status', split_part(v_event, ':', 2))
      end || _emit_each.payloads[i] || jsonb_build_object('event', v_event);
    if v_realtime then
      -- A static call (planned once per session, replanned if the function
      -- changes) rather than EXECUTE, which parses and plans on every event.
      -- The argument types match the checked signature exactly, so this
      -- resolves to the function just checked.
      perform realtime.send(v_body, v_event, 'pgflow:run:' || _emit_each.run_ids[i]::text, false);
    else
      v_bodies[i] := v_body;
    end if;
  end loop;
  if not v_realtime then
    -- The pg_notify form, all in one statement, in array order: the body
    -- without inputs, outputs or error messages, on a channel named like the topic.
    perform pg_notify('pgflow:run:' || u.run_id::text, (
      select jsonb_object_agg(e.key, e.value)
      from jsonb_each(u.body) e
      where e.key in ('event', 'event_type', 'run_id', 'flow_slug', 'step_slug', 'status',
                      'failed_step', 'started_at', 'completed_at', 'failed_at', 'cancelled_at',
                      'skip_reason', 'skipped_at',
                      'restart_of_run_id', 'restarted_as'))::text)
    from unnest(_emit_each.run_ids, v_bodies) as u(run_id, body);
  end if;
end;
$$;

-- Helpers on the hot path are PL/pgSQL rather than SQL functions: a SQL
-- function with a SET clause is re-planned on every call, a PL/pgSQL one
-- keeps its plans for the session.
create or replace function pgflow._emit_step(run_id uuid, step_slug text, status text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit(run_id, 'step:' || step_slug || ':' || status, payload);
end;
$$;

-- step:<status> events of many (run, step) pairs, in array order.
create or replace function pgflow._emit_steps(run_ids uuid[], step_slugs text[], status text, payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_events text[] := '{}';
begin
  for i in 1 .. coalesce(cardinality(_emit_steps.run_ids), 0) loop
    v_events[i] := 'step:' || _emit_steps.step_slugs[i] || ':' || _emit_steps.status;
  end loop;
  perform pgflow._emit_each(_emit_steps.run_ids, v_events, _emit_steps.payloads);
end;
$$;

create or replace function pgflow._emit_run(run_id uuid, status text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit(run_id, 'run:' || status, payload);
end;
$$;

-- run:<status> events of many runs, in array order.
create or replace function pgflow._emit_runs(run_ids uuid[], status text, payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit_each(_emit_runs.run_ids,
    array_fill('run:' || _emit_runs.status, array[coalesce(cardinality(_emit_runs.run_ids), 0)]),
    _emit_runs.payloads);
end;
$$;

-- ==== sql/engine/flow_definitions.sql ====
-- Defining flows and steps: slugs, option bounds, create_flow and add_step.
-- As in pgflow, calling either again for an existing flow or step returns the
-- existing row unchanged, even when the options differ (a NOTICE names the
-- difference: options are tuned with UPDATE, see README "Switching from
-- pgflow"). A step whose structure (type, dependencies) differs is refused.

-- A slug names a flow or a step: an identifier-like word, and never "run",
-- which is the key of the flow input in every step's input object.
create or replace function pgflow.is_valid_slug(slug text)
returns boolean
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select slug is not null
    and length(slug) <= 128
    and slug ~ '^[a-zA-Z_][a-zA-Z0-9_]*$'
    and slug <> 'run';
$$;

-- The range of each flow/step option, from src/limits.ts (the DSL reads the
-- same numbers). Bounded so that the engine's arithmetic never overflows.
create or replace function pgflow._option_bounds(option text, out minimum int, out maximum int)
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  case option
    when 'max_attempts' then minimum := 0; maximum := 1000;
    when 'base_delay' then minimum := 0; maximum := 86400;
    when 'timeout' then minimum := 1; maximum := 86400;
    when 'start_delay' then minimum := 0; maximum := 604800;
    else raise exception '_option_bounds: unknown option %', coalesce(quote_literal(option), 'NULL');
  end case;
end;
$$;

-- NULL (inherit) or within the option's bounds.
create or replace function pgflow._option_in_range(option text, value numeric)
returns boolean
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_bounds record;
begin
  v_bounds := pgflow._option_bounds(option);
  return value is null or (value >= v_bounds.minimum and value <= v_bounds.maximum);
end;
$$;

-- Raises naming the option, its value and its bounds (pgflow._option_bounds).
create or replace function pgflow._check_option(what text, name text, value numeric)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_bounds record;
begin
  if not pgflow._option_in_range(name, value) then
    v_bounds := pgflow._option_bounds(name);
    perform pgflow._raise_invalid(format('%s: %s must be between %s and %s, got %s',
      what, name, v_bounds.minimum, v_bounds.maximum, value));
  end if;
end;
$$;

create or replace function pgflow.create_flow(
  flow_slug text,
  max_attempts int default 3,
  base_delay int default 5,
  timeout int default 60
)
returns pgflow.flows
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('create_flow(%L)', create_flow.flow_slug);
  v_flow pgflow.flows;
begin
  if not pgflow.is_valid_slug(create_flow.flow_slug) then
    perform pgflow._raise_invalid(format(
      '%s: flow_slug must match ^[a-zA-Z_][a-zA-Z0-9_]*$, be at most 128 characters and not be "run"',
      v_what));
  end if;
  -- The flow's queue is named by its slug; pgmq limits queue names to 47 characters.
  if length(create_flow.flow_slug) > 47 then
    perform pgflow._raise_invalid(format(
      '%s: flow_slug is %s characters; a flow slug names its pgmq queue and may have at most 47',
      v_what, length(create_flow.flow_slug)));
  end if;
  perform pgflow._check_option(v_what, 'max_attempts', create_flow.max_attempts);
  perform pgflow._check_option(v_what, 'base_delay', create_flow.base_delay);
  perform pgflow._check_option(v_what, 'timeout', create_flow.timeout);

  -- Before the flow's row: compiling its queue's access (below) must not wait
  -- for a lock while this transaction holds a row another creator waits for.
  perform pgflow._lock_flow_definitions();
  -- NULL takes the default, as omitting the argument does.
  insert into pgflow.flows (flow_slug, opt_max_attempts, opt_base_delay, opt_timeout)
  values (create_flow.flow_slug, coalesce(create_flow.max_attempts, 3),
          coalesce(create_flow.base_delay, 5), coalesce(create_flow.timeout, 60))
  on conflict (flow_slug) do nothing
  returning * into v_flow;

  if v_flow.flow_slug is null then
    select * into v_flow from pgflow.flows where flow_slug = create_flow.flow_slug;
    if (v_flow.opt_max_attempts, v_flow.opt_base_delay, v_flow.opt_timeout)
       is distinct from (coalesce(create_flow.max_attempts, 3), coalesce(create_flow.base_delay, 5),
                         coalesce(create_flow.timeout, 60)) then
      raise notice '%: the flow exists with max_attempts=%, base_delay=%, timeout=%; kept unchanged (asked for %, %, %)',
        v_what, v_flow.opt_max_attempts, v_flow.opt_base_delay, v_flow.opt_timeout,
        coalesce(create_flow.max_attempts, 3), coalesce(create_flow.base_delay, 5), coalesce(create_flow.timeout, 60);
    end if;
    return v_flow;
  end if;

  perform pgmq.create(create_flow.flow_slug);
  -- Its queue's statements planned once per connection (queue_access.sql).
  perform pgflow._compile_queue_access();
  return v_flow;
end;
$$;

create or replace function pgflow.add_step(
  flow_slug text,
  step_slug text,
  deps_slugs text[] default '{}',
  max_attempts int default null,
  base_delay int default null,
  timeout int default null,
  start_delay int default null,
  step_type text default 'single',
  required_input_pattern jsonb default null,
  forbidden_input_pattern jsonb default null,
  when_unmet text default 'skip',
  when_exhausted text default 'fail'
)
returns pgflow.steps
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('add_step(%L, %L)', add_step.flow_slug, add_step.step_slug);
  v_deps text[] := coalesce(add_step.deps_slugs, '{}');
  v_type text := coalesce(add_step.step_type, 'single');
  v_when_unmet text := coalesce(add_step.when_unmet, 'skip');
  v_when_exhausted text := coalesce(add_step.when_exhausted, 'fail');
  v_unknown text;
  v_existing pgflow.steps;
  v_existing_deps text[];
  v_step pgflow.steps;
begin
  -- Serialises step additions per flow so step_index stays dense.
  perform 1 from pgflow.flows where flow_slug = add_step.flow_slug for update;
  if not found then
    raise exception '%: flow % does not exist', v_what, coalesce(quote_literal(add_step.flow_slug), 'NULL')
      using errcode = 'no_data_found', hint = 'Call pgflow.create_flow first.';
  end if;
  if not pgflow.is_valid_slug(add_step.step_slug) then
    perform pgflow._raise_invalid(format(
      '%s: step_slug must match ^[a-zA-Z_][a-zA-Z0-9_]*$, be at most 128 characters and not be "run"',
      v_what));
  end if;
  if v_type not in ('single', 'map') then
    perform pgflow._raise_invalid(format(
      '%s: step_type must be ''single'' or ''map'', got %L', v_what, v_type));
  end if;
  if array_position(v_deps, null) is not null then
    perform pgflow._raise_invalid(format('%s: deps_slugs must not contain NULL', v_what));
  end if;
  if add_step.step_slug = any(v_deps) then
    perform pgflow._raise_invalid(format(
      '%s: a step cannot depend on itself (that is a cycle)', v_what));
  end if;
  if cardinality(v_deps) <> (select count(distinct d) from unnest(v_deps) d) then
    perform pgflow._raise_invalid(format('%s: deps_slugs lists a step twice: %s', v_what, v_deps));
  end if;
  if v_type = 'map' and cardinality(v_deps) > 1 then
    perform pgflow._raise_invalid(format(
      '%s: a map step takes at most one dependency (the array it maps over), got %s',
      v_what, cardinality(v_deps)));
  end if;
  perform pgflow._check_option(v_what, 'max_attempts', add_step.max_attempts);
  perform pgflow._check_option(v_what, 'base_delay', add_step.base_delay);
  perform pgflow._check_option(v_what, 'timeout', add_step.timeout);
  perform pgflow._check_option(v_what, 'start_delay', add_step.start_delay);
  perform pgflow._check_step_condition(v_what, add_step.required_input_pattern,
    add_step.forbidden_input_pattern, v_when_unmet, v_when_exhausted);

  select * into v_existing from pgflow.steps
  where flow_slug = add_step.flow_slug and step_slug = add_step.step_slug;
  if found then
    select coalesce(array_agg(dep_slug order by dep_slug), '{}') into v_existing_deps
    from pgflow.deps where flow_slug = add_step.flow_slug and step_slug = add_step.step_slug;
    if v_existing.step_type is distinct from v_type
       or v_existing_deps is distinct from (select coalesce(array_agg(d order by d), '{}') from unnest(v_deps) d) then
      perform pgflow._raise_invalid(format(
        '%s: the step exists with step_type=%s and deps=%s; asked for step_type=%s and deps=%s '
        || '(a different structure needs a new flow slug)',
        v_what, v_existing.step_type, v_existing_deps, v_type, v_deps));
    end if;
    -- Conditions decide which steps run: they are structure, as in pgflow's shape comparison.
    if (v_existing.required_input_pattern, v_existing.forbidden_input_pattern,
        v_existing.when_unmet, v_existing.when_exhausted)
       is distinct from (add_step.required_input_pattern, add_step.forbidden_input_pattern,
                         v_when_unmet, v_when_exhausted) then
      perform pgflow._raise_invalid(format(
        '%s: the step exists with required_input_pattern=%s, forbidden_input_pattern=%s, when_unmet=%s, '
        || 'when_exhausted=%s; asked for %s, %s, %s, %s (a different condition needs a new flow slug)',
        v_what, coalesce(v_existing.required_input_pattern::text, 'NULL'),
        coalesce(v_existing.forbidden_input_pattern::text, 'NULL'), v_existing.when_unmet,
        v_existing.when_exhausted, coalesce(add_step.required_input_pattern::text, 'NULL'),
        coalesce(add_step.forbidden_input_pattern::text, 'NULL'), v_when_unmet, v_when_exhausted));
    end if;
    if (v_existing.opt_max_attempts, v_existing.opt_base_delay, v_existing.opt_timeout, v_existing.opt_start_delay)
       is distinct from (add_step.max_attempts, add_step.base_delay, add_step.timeout, add_step.start_delay) then
      raise notice '%: the step exists with max_attempts=%, base_delay=%, timeout=%, start_delay=%; kept unchanged',
        v_what, v_existing.opt_max_attempts, v_existing.opt_base_delay, v_existing.opt_timeout,
        v_existing.opt_start_delay;
    end if;
    return v_existing;
  end if;

  select d into v_unknown from unnest(v_deps) d
  where not exists (
    select 1 from pgflow.steps s where s.flow_slug = add_step.flow_slug and s.step_slug = d)
  limit 1;
  if v_unknown is not null then
    perform pgflow._raise_invalid(format(
      '%s: unknown dependency %L; add steps in topological order (dependencies first)',
      v_what, v_unknown));
  end if;

  -- Runs in progress have their step states fixed at start; a new step would never run in them.
  if exists (select 1 from pgflow.runs where flow_slug = add_step.flow_slug and status = 'started') then
    perform pgflow._raise_invalid(format(
      '%s: the flow has runs in progress; change a flow only when none is started, or use a new flow slug',
      v_what));
  end if;

  insert into pgflow.steps (
    flow_slug, step_slug, step_type, step_index, deps_count,
    opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay,
    required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted
  )
  values (
    add_step.flow_slug, add_step.step_slug, v_type,
    (select count(*) from pgflow.steps where flow_slug = add_step.flow_slug),
    cardinality(v_deps),
    add_step.max_attempts, add_step.base_delay, add_step.timeout, add_step.start_delay,
    add_step.required_input_pattern, add_step.forbidden_input_pattern, v_when_unmet, v_when_exhausted
  )
  returning * into v_step;

  insert into pgflow.deps (flow_slug, dep_slug, step_slug)
  select add_step.flow_slug, d, add_step.step_slug from unnest(v_deps) d;

  return v_step;
end;
$$;

-- ==== sql/engine/task_messages.sql ====
-- The message a task's pgmq message carries (pgflow's format, which pgflow's
-- workers read too): which flow, run, step and task it is for. PL/pgSQL, not
-- SQL: a SQL function with a SET clause is planned again on every call (one
-- call per task: 18 us against 3 us).
create or replace function pgflow._task_message(flow_slug text, run_id uuid, step_slug text, task_index int)
returns jsonb
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return jsonb_build_object('flow_slug', _task_message.flow_slug, 'run_id', _task_message.run_id,
                            'step_slug', _task_message.step_slug, 'task_index', _task_message.task_index);
end;
$$;

-- ==== sql/engine/wakeups.sql ====
-- Wake-up hints (README, "Worker wake-up"): a statement that queues messages
-- visible at once tells LISTENing workers with NOTIFY "pgflow:queue:<flow>".
--
-- A report that claims in the same transaction (complete_task_and_claim,
-- complete_tasks_and_claim) holds back the hints its completions would send,
-- and after its claim sends only those its claim may have left work for: a
-- flow it did not claim from, or its own flow when the claim took as many
-- messages as it asked for (counting messages, not started tasks: a message
-- whose task cannot start fills the claim too). A claim that took fewer found
-- nothing else visible, so the tasks the report made ready are all claimed
-- already (by it, or by a concurrent claimer it skipped over). Without the
-- hold, each such report woke every idle worker of the flow for a read that
-- found nothing, and on a busy machine that read competed with the next
-- step's report.
--
-- Hints that starting the claimed tasks makes (a stalled task it fails may
-- ready its dependents) go out at once: the claim counted its messages before.
--
-- The hold lives in settings keyed by the transaction's id (a SET made for the
-- whole session, which a transaction pooler would pass on to other clients,
-- matches no later transaction) and is read without parsing anything a caller
-- could have set. Any role may set them in its own transaction; that withholds
-- only that transaction's hints, which cost latency (a worker's idle wait ends
-- by itself), never work.

-- The value that marks the hold as this transaction's.
create or replace function pgflow._wakeup_hold_key()
returns text
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  return 'held by ' || pg_current_xact_id()::text;
end;
$$;

-- Whether this transaction holds hints back now.
create or replace function pgflow._wakeups_held()
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hold text := coalesce(current_setting('edgeflow.hold_wakeups', true), '');
begin
  -- Most calls: no hold set at all (then the key is not worth computing).
  return v_hold <> '' and v_hold = pgflow._wakeup_hold_key();
end;
$$;

-- Announces visible messages of a flow, or records the hint while a report
-- holds hints back.
create or replace function pgflow._announce_ready(flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_held text;
begin
  if not pgflow._wakeups_held() then
    perform pg_notify('pgflow:queue:' || _announce_ready.flow_slug, '');
    return;
  end if;
  -- Slugs hold no comma.
  v_held := coalesce(current_setting('edgeflow.held_wakeups', true), '');
  if not (_announce_ready.flow_slug = any(string_to_array(v_held, ','))) then
    perform set_config('edgeflow.held_wakeups',
      concat_ws(',', nullif(v_held, ''), _announce_ready.flow_slug), true);
  end if;
end;
$$;

-- Starts holding hints back, for a report about to claim.
create or replace function pgflow._hold_wakeups()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform set_config('edgeflow.hold_wakeups', pgflow._wakeup_hold_key(), true);
  perform set_config('edgeflow.held_wakeups', '', true);
  -- Until a claim says otherwise: a report whose claim never read holds back nothing.
  perform set_config('edgeflow.claim_was_full', 'on', true);
end;
$$;

-- Called by every claim once it has read its messages: during a hold, notes
-- whether the claim took as many messages as it asked for, and ends the
-- holding of new hints (those the start of the claimed tasks makes go out).
create or replace function pgflow._note_claim(was_full boolean)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if pgflow._wakeups_held() then
    perform set_config('edgeflow.claim_was_full', case when was_full then 'on' else 'off' end, true);
    perform set_config('edgeflow.hold_wakeups', '', true);
  end if;
end;
$$;

-- Ends the hold after the claim on claimed_flow: sends the hints held back for
-- other flows, and for claimed_flow if the claim was full (it may have left
-- visible messages behind).
create or replace function pgflow._release_wakeups(claimed_flow text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_flow text;
  v_claim_was_full boolean := current_setting('edgeflow.claim_was_full', true) is distinct from 'off';
begin
  perform set_config('edgeflow.hold_wakeups', '', true);
  for v_flow in
    select h.flow_slug
    from unnest(string_to_array(coalesce(current_setting('edgeflow.held_wakeups', true), ''), ','))
      as h(flow_slug)
  loop
    if v_flow is distinct from claimed_flow or v_claim_was_full then
      -- The hold is off now: this announces.
      perform pgflow._announce_ready(v_flow);
    end if;
  end loop;
  perform set_config('edgeflow.held_wakeups', '', true);
  perform set_config('edgeflow.claim_was_full', '', true);
end;
$$;

-- ==== sql/engine/queue_access.sql ====
-- Queue access compiled per flow: claiming, archiving and sending a flow's task
-- messages with statements planned once per connection.
--
-- pgmq's functions build each statement from the queue's name and EXECUTE it,
-- so every call parses and plans it again: on a worker's hot path, claiming ten
-- tasks and archiving ten messages cost more in planning than in running.
-- _compile_queue_access writes _queue_claim, _queue_archive, _queue_send and
-- _queue_has_visible
-- with one branch of static SQL per flow whose queue exists (PL/pgSQL keeps
-- their plans for the session) and, for any other queue, the dynamic
-- statement. create_flow and delete_flow_and_data compile again; so does every
-- release (the statement at the end of this file), which covers flows created
-- before it, by pgflow or by an earlier edgeflow.
--
-- The rows written are pgmq 1.5's: a message's columns as pgmq.send_batch
-- writes them, the archive's as pgmq.archive moves them
-- (tests/queue_access_test.ts compares both paths).
--
-- Each call compares the queue's name with every compiled flow's in turn: about
-- 0.05 us a flow (a call for the last of 500 flows costs some 25 us more than
-- for the first).

-- Serialises the transactions that change which flows exist (create_flow,
-- delete_flow_and_data) and compile: each takes this first and holds it to
-- commit, so a compiler that waited sees every flow committed before it (in
-- READ COMMITTED; a REPEATABLE READ transaction reads the flows as of its
-- snapshot, so a flow committed after it began keeps the dynamic statements
-- until the next compile). A table lock rather than an advisory one: only a
-- role that may write pgflow.flows can take it, so no other role can hold up
-- flow creation. A role that may not is not one that can compile either (the
-- owner of these functions owns the table), and it goes on without the lock.
create or replace function pgflow._lock_flow_definitions()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  lock table pgflow.flows in share row exclusive mode;
exception when insufficient_privilege then
  null;
end;
$$;

create or replace function pgflow._compile_queue_access()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $compile$
declare
  v_claim text := '';
  v_archive text := '';
  v_send text := '';
  v_visible text := '';
  v_flow record;
  v_options text := 'language plpgsql set search_path = pg_catalog, pg_temp '
    -- As the hot entry points (ARCHITECTURE.md, "Key lookups stay key lookups"
    -- and "Planned once per connection").
    'set enable_seqscan = off set plan_cache_mode = force_generic_plan';
  -- The claim, one text for both paths: %1$s is the queue's table, %2$s-%5$s
  -- the most messages, the steps, their seconds hidden and the default seconds.
  -- The picked ids reach the update as one array, so the update can only look
  -- them up by key. As a join (pgmq.read's form), a plan made while the queue
  -- was tiny could read the whole queue for each claim: a nested loop over a
  -- full scan of it, which made draining a queue quadratic in its length.
  v_claim_sql constant text := $sql$
        update %1$s q
           set vt = clock_timestamp() + make_interval(secs =>
                 coalesce(%4$s[array_position(%3$s, q.message ->> 'step_slug')], %5$s)),
               read_ct = q.read_ct + 1
         where q.msg_id = any (array(
           select m.msg_id from %1$s m
            where m.vt <= clock_timestamp()
            order by m.msg_id
            limit %2$s
            for update skip locked))
        returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers$sql$;
begin
  -- One compiler at a time (two replacing a function at once would fail); the
  -- last to commit writes every flow committed before it.
  perform pgflow._lock_flow_definitions();
  begin
    for v_flow in
      select f.flow_slug, 'q_' || lower(f.flow_slug) as q, 'a_' || lower(f.flow_slug) as a
      from pgflow.flows f
      where to_regclass(format('pgmq.%I', 'q_' || lower(f.flow_slug))) is not null
        and to_regclass(format('pgmq.%I', 'a_' || lower(f.flow_slug))) is not null
      order by f.flow_slug
    loop
      v_claim := v_claim || format($branch$
    if p_queue = %1$L then
      return query %2$s;
      return;
    end if;$branch$, v_flow.flow_slug,
        format(v_claim_sql, format('pgmq.%I', v_flow.q), 'p_qty', 'p_steps', 'p_hidden_for', 'p_vt'));
      v_archive := v_archive || format($branch$
    if p_queue = %1$L then
      with archived as (
        delete from pgmq.%2$I q where q.msg_id = any(p_msg_ids)
        returning q.msg_id, q.vt, q.read_ct, q.enqueued_at, q.message, q.headers)
      insert into pgmq.%3$I (msg_id, vt, read_ct, enqueued_at, message, headers)
      select a.msg_id, a.vt, a.read_ct, a.enqueued_at, a.message, a.headers from archived a;
      return;
    end if;$branch$, v_flow.flow_slug, v_flow.q, v_flow.a);
      v_send := v_send || format($branch$
    if p_queue = %1$L then
      return query
        insert into pgmq.%2$I (vt, message)
        select v_vt, u.message from unnest(p_msgs) with ordinality as u(message, ord) order by u.ord
        returning msg_id;
      return;
    end if;$branch$, v_flow.flow_slug, v_flow.q);
      v_visible := v_visible || format($branch$
    if p_queue = %1$L then
      return exists (select 1 from pgmq.%2$I q where q.vt <= clock_timestamp());
    end if;$branch$, v_flow.flow_slug, v_flow.q);
    end loop;

    -- Claims up to p_qty visible messages of the queue in msg_id order, as
    -- pgmq.read does, hiding each for its step's seconds in p_hidden_for (the
    -- position of its step_slug in p_steps), else for p_vt.
    execute format($create$
create or replace function pgflow._queue_claim(p_queue text, p_qty int, p_steps text[],
  p_hidden_for int[], p_vt int)
returns setof pgmq.message_record %s as %L$create$, v_options, 'begin' || v_claim || format($generic$
  return query execute format(%L, format('pgmq.%%I', 'q_' || lower(p_queue)))
  using p_qty, p_steps, p_hidden_for, p_vt;
end;$generic$, format(v_claim_sql, '%1$s', '$1', '$2', '$3', '$4')));
    -- Moves messages to the queue's archive, as pgmq.archive does.
    execute format($create$
create or replace function pgflow._queue_archive(p_queue text, p_msg_ids bigint[])
returns void %s as %L$create$, v_options, 'begin' || v_archive || $generic$
  perform pgmq.archive(p_queue, p_msg_ids);
end;$generic$);
    -- Sends messages visible after p_delay seconds, as pgmq.send_batch does;
    -- ids ascend in array order.
    execute format($create$
create or replace function pgflow._queue_send(p_queue text, p_msgs jsonb[], p_delay int)
returns setof bigint %s as %L$create$, v_options, $declare$
declare
  v_vt timestamptz := clock_timestamp() + make_interval(secs => p_delay);
begin$declare$ || v_send || $generic$
  return query select b.msg_id from pgmq.send_batch(p_queue, p_msgs, p_delay) as b(msg_id);
end;$generic$);
    -- Whether the queue holds a visible message: one probe of its vt index, for
    -- a long poll to look often and claim only when there is something to claim.
    execute format($create$
create or replace function pgflow._queue_has_visible(p_queue text)
returns boolean %s as %L$create$, v_options, $declare$
declare
  v_visible boolean;
begin$declare$ || v_visible || $generic$
  execute format('select exists (select 1 from pgmq.%I q where q.vt <= clock_timestamp())',
                 'q_' || lower(p_queue)) into v_visible;
  return v_visible;
end;$generic$);
    revoke all on function pgflow._queue_claim(text, int, text[], int[], int) from public;
    revoke all on function pgflow._queue_has_visible(text) from public;
    revoke all on function pgflow._queue_archive(text, bigint[]) from public;
    revoke all on function pgflow._queue_send(text, jsonb[], int) from public;
  exception when insufficient_privilege then
    -- A role that may create flows but does not own these functions (or may
    -- not look into pgmq's schema): nothing changes, and its flow goes through
    -- the dynamic statements until the owner compiles again (any create_flow,
    -- delete_flow_and_data or release by the owner).
    raise notice 'pgflow: queue access not compiled (%); flow queues use dynamic statements', sqlerrm;
  end;
end;
$compile$;

select pgflow._compile_queue_access();

-- ==== sql/engine/run_progress.sql ====
-- How a run moves forward: step outputs, readiness, starting ready steps
-- (sending their task messages), cascading taskless steps, counting down, and
-- completing the run.

-- The output a step hands to its dependents: a single step's task output, or
-- a map step's task outputs in task order (an empty map gives []).
create or replace function pgflow._step_output(run_id uuid, step_slug text, step_type text)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_output jsonb;
begin
  if _step_output.step_type = 'map' then
    select coalesce(jsonb_agg(t.output order by t.task_index), '[]'::jsonb) into v_output
    from pgflow.step_tasks t
    where t.run_id = _step_output.run_id and t.step_slug = _step_output.step_slug;
  else
    select t.output into v_output
    from pgflow.step_tasks t
    where t.run_id = _step_output.run_id and t.step_slug = _step_output.step_slug
      and t.task_index = 0;
  end if;
  return v_output;
end;
$$;

-- Lock order everywhere: the run row first, then step states, then tasks;
-- that keeps concurrent completions of one run from deadlocking.

-- Marks a step completed and hands its output to the steps that depend on it.
-- Returns the run's remaining_steps afterwards.
create or replace function pgflow._finish_step(run_id uuid, step_slug text, step_type text, output jsonb)
returns int
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_state pgflow.step_states;
begin
  update pgflow.step_states
     set status = 'completed',
         started_at = coalesce(started_at, pgflow.now()),
         completed_at = pgflow.now(),
         remaining_tasks = 0
   where run_id = _finish_step.run_id and step_slug = _finish_step.step_slug
  returning * into v_state;
  return pgflow._step_completed(v_state, _finish_step.step_type, _finish_step.output);
end;
$$;

-- What follows a step's completion (its row already says so): the event, the
-- dependents' inputs, and the run's count of remaining steps, which it returns.
create or replace function pgflow._step_completed(state pgflow.step_states, step_type text, output jsonb)
returns int
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_size int;
  v_remaining int;
begin
  perform pgflow._emit_step(_step_completed.state.run_id, _step_completed.state.step_slug, 'completed',
    jsonb_build_object('output', _step_completed.output, 'started_at', _step_completed.state.started_at,
                       'completed_at', _step_completed.state.completed_at));

  -- A map that depends on this step now knows its size: this map's task count,
  -- or the length of this single step's array output (checked by the caller).
  -- Computed here, not in the UPDATE: the planner may fold jsonb_array_length
  -- of a parameter even in a CASE branch that is not taken.
  if _step_completed.step_type = 'map' then
    v_size := _step_completed.state.initial_tasks;
  elsif jsonb_typeof(_step_completed.output) = 'array' then
    v_size := jsonb_array_length(_step_completed.output);
  end if;
  update pgflow.step_states ss
     set remaining_deps = ss.remaining_deps - 1,
         initial_tasks = case when s.step_type = 'map' then v_size else ss.initial_tasks end
    from pgflow.deps d
    join pgflow.steps s on s.flow_slug = d.flow_slug and s.step_slug = d.step_slug
   where d.flow_slug = _step_completed.state.flow_slug
     and d.dep_slug = _step_completed.state.step_slug
     and ss.run_id = _step_completed.state.run_id
     and ss.step_slug = d.step_slug;

  update pgflow.runs set remaining_steps = remaining_steps - 1
  where run_id = _step_completed.state.run_id
  returning remaining_steps into v_remaining;
  return v_remaining;
end;
$$;

-- Completes, in one transaction, every ready step that has no task to run
-- (maps over an empty array) and, through them, maps that follow them.
create or replace function pgflow.cascade_complete_taskless_steps(run_id uuid)
returns int
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_total int := 0;
  v_round int;
  v_slug text;
begin
  loop
    v_round := 0;
    for v_slug in
      select ss.step_slug
      from pgflow.step_states ss
      join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
      where ss.run_id = cascade_complete_taskless_steps.run_id
        and ss.status = 'created' and ss.remaining_deps = 0 and ss.initial_tasks = 0
      order by s.step_index
    loop
      perform pgflow._finish_step(cascade_complete_taskless_steps.run_id, v_slug, 'map', '[]'::jsonb);
      v_round := v_round + 1;
    end loop;
    exit when v_round = 0;
    v_total := v_total + v_round;
  end loop;
  return v_total;
end;
$$;

-- The array a map step of this run maps over: the run's input for a root map,
-- the output of the single step it depends on otherwise; NULL for a map over a
-- map (each of its tasks reads its own source task's output).
create or replace function pgflow._map_source(run_id uuid, flow_slug text, step_slug text,
                                              deps_count int)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_dep record;
  v_source jsonb;
begin
  if _map_source.deps_count = 0 then
    select r.input into v_source from pgflow.runs r where r.run_id = _map_source.run_id;
    return v_source;
  end if;
  select d.dep_slug, ds.step_type into v_dep
  from pgflow.deps d
  join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
  where d.flow_slug = _map_source.flow_slug and d.step_slug = _map_source.step_slug;
  if v_dep.step_type is distinct from 'single' then
    return null;
  end if;
  select t.output into v_source
  from pgflow.step_tasks t
  where t.run_id = _map_source.run_id and t.step_slug = v_dep.dep_slug and t.task_index = 0;
  return v_source;
end;
$$;

-- Starts every step of the run whose dependencies are all completed: creates
-- its tasks and sends their messages (delayed by the step's start_delay).
create or replace function pgflow.start_ready_steps(run_id uuid)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_step record;
  v_state pgflow.step_states;
  v_now timestamptz;
  v_source jsonb;
  v_msg_ids bigint[];
  v_to_settle boolean;
  v_run_ids uuid[] := '{}';
  v_events text[] := '{}';
  v_payloads jsonb[] := '{}';
begin
  -- Most calls find nothing ready (a step whose dependents wait for others):
  -- one probe of the run's states (a primary-key range, one row per step)
  -- answers those. It also tells whether a ready step has a condition or no
  -- tasks, the only ones settling acts on.
  select bool_or(s.required_input_pattern is not null or s.forbidden_input_pattern is not null
                 or coalesce(ss.initial_tasks, 0) = 0)
    into v_to_settle
  from pgflow.step_states ss
  join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
  where ss.run_id = start_ready_steps.run_id and ss.status = 'created' and ss.remaining_deps = 0;
  if v_to_settle is null then
    return;
  end if;
  -- Once: in a many-row statement (a map's tasks) a function call runs for every row.
  v_now := pgflow.now();
  -- Conditions first (sql/engine/step_conditions.sql): a step may be skipped,
  -- or fail the run, instead of starting; a step with no tasks completes.
  if v_to_settle and not pgflow._settle_ready_steps(start_ready_steps.run_id) then
    return;
  end if;

  for v_step in
    select ss.flow_slug, ss.step_slug, ss.initial_tasks, coalesce(s.opt_start_delay, 0) as start_delay,
           s.step_type, s.deps_count
    from pgflow.step_states ss
    join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
    where ss.run_id = start_ready_steps.run_id
      and ss.status = 'created' and ss.remaining_deps = 0 and ss.initial_tasks > 0
    order by s.step_index
    for update of ss
  loop
    update pgflow.step_states
       set status = 'started', started_at = v_now, remaining_tasks = v_step.initial_tasks
     where run_id = start_ready_steps.run_id and step_slug = v_step.step_slug
    returning * into v_state;

    -- pgmq assigns ascending ids in array order, so the n-th smallest id is task n.
    v_msg_ids := array(
      select sent.msg_id
      from pgflow._queue_send(
        v_step.flow_slug,
        array(
          select pgflow._task_message(v_step.flow_slug, start_ready_steps.run_id, v_step.step_slug, i)
          from generate_series(0, v_step.initial_tasks - 1) as i
          order by i),
        v_step.start_delay) as sent(msg_id)
      order by sent.msg_id);
    if v_step.step_type = 'map' then
      -- Each task with its element, from one pass over the map's array
      -- (jsonb_array_elements fetches and decompresses it once; "v_source -> i"
      -- would for every task). Anything but an array stores no elements: its
      -- claims then fail the way they always did.
      v_source := pgflow._map_source(start_ready_steps.run_id, v_step.flow_slug, v_step.step_slug,
                                     v_step.deps_count);
      if jsonb_typeof(v_source) is distinct from 'array' then
        v_source := null;
      end if;
      insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at,
                                     element)
      select v_step.flow_slug, start_ready_steps.run_id, v_step.step_slug, (u.ord - 1)::int,
             u.msg_id, v_now, e.value
      from unnest(v_msg_ids) with ordinality as u(msg_id, ord)
      left join jsonb_array_elements(v_source) with ordinality as e(value, ord) on e.ord = u.ord;
    else
      insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at)
      select v_step.flow_slug, start_ready_steps.run_id, v_step.step_slug, (u.ord - 1)::int,
             u.msg_id, v_now
      from unnest(v_msg_ids) with ordinality as u(msg_id, ord);
    end if;

    -- A hint for workers that LISTEN (wakeups.sql); polling stays the fallback.
    if v_step.start_delay = 0 then
      perform pgflow._announce_ready(v_step.flow_slug);
    end if;

    -- The events go out after the loop with one trust check of realtime.send,
    -- in step order.
    v_run_ids := v_run_ids || start_ready_steps.run_id;
    v_events := v_events || ('step:' || v_step.step_slug || ':started');
    v_payloads := v_payloads || jsonb_build_object('remaining_tasks', v_state.remaining_tasks,
      'remaining_deps', v_state.remaining_deps, 'started_at', v_state.started_at);
  end loop;
  perform pgflow._emit_each(v_run_ids, v_events, v_payloads);
end;
$$;

-- Completes the run when no step remains; its output holds every leaf step's
-- output (a skipped leaf is left out).
create or replace function pgflow.maybe_complete_run(run_id uuid)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_status text;
  v_remaining int;
begin
  -- Cheap test first: most calls come while steps remain. The run is read by
  -- its key alone and tested here: given "status = 'started'", a plan cached
  -- while the tables were small may take a status index for nearly empty and
  -- read every started run on each call. Then again under the row lock, so
  -- _count_down_runs needs only the key.
  select r.status, r.remaining_steps into v_status, v_remaining
  from pgflow.runs r where r.run_id = maybe_complete_run.run_id;
  if v_status is distinct from 'started' or v_remaining <> 0 then
    return;
  end if;
  select r.status, r.remaining_steps into v_status, v_remaining
  from pgflow.runs r where r.run_id = maybe_complete_run.run_id
  for update;
  if v_status is distinct from 'started' or v_remaining <> 0 then
    return;
  end if;
  perform pgflow._count_down_runs(array[maybe_complete_run.run_id], array[0]);
end;
$$;

-- A completed run's output: every leaf step's output as _step_output gives it
-- (a skipped leaf is left out), in one query.
create or replace function pgflow._run_output(run_id uuid, flow_slug text)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_output jsonb;
begin
  select coalesce(jsonb_object_agg(s.step_slug,
           pgflow._step_output(_run_output.run_id, s.step_slug, s.step_type)), '{}'::jsonb)
    into v_output
  from pgflow.steps s
  where s.flow_slug = _run_output.flow_slug
    and not exists (
      select 1 from pgflow.deps d
      where d.flow_slug = s.flow_slug and d.dep_slug = s.step_slug)
    and not exists (
      select 1 from pgflow.step_states ss
      where ss.run_id = _run_output.run_id and ss.step_slug = s.step_slug and ss.status = 'skipped');
  return v_output;
end;
$$;

-- Counts steps_done[i] completed steps off run run_ids[i] (runs locked by the
-- caller); a started run left with no step completes in the same update, with
-- its _run_output, and announces run:completed. The runs are found by key
-- alone and their status tested in the SET: given "status = 'started'" in the
-- WHERE, a plan cached while the tables were small could read every started run.
create or replace function pgflow._count_down_runs(run_ids uuid[], steps_done int[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_now timestamptz := pgflow.now();
  v_ids uuid[];
  v_payloads jsonb[];
begin
  with counted as (
    update pgflow.runs r
       set remaining_steps = r.remaining_steps - k.n,
           status = case when r.remaining_steps - k.n = 0 and r.status = 'started'
                         then 'completed' else r.status end,
           completed_at = case when r.remaining_steps - k.n = 0 and r.status = 'started'
                               then v_now else r.completed_at end,
           output = case when r.remaining_steps - k.n = 0 and r.status = 'started'
                         then pgflow._run_output(r.run_id, r.flow_slug) else r.output end
      from unnest(_count_down_runs.run_ids, _count_down_runs.steps_done) as k(run_id, n)
     where r.run_id = k.run_id
       and r.run_id = any(_count_down_runs.run_ids) -- by key, as in _count_down_steps
    returning r.run_id, r.flow_slug, r.status, r.remaining_steps, r.output, r.completed_at
  )
  select array_agg(c.run_id order by c.run_id),
         array_agg(jsonb_build_object('flow_slug', c.flow_slug, 'output', c.output,
                                      'completed_at', c.completed_at) order by c.run_id)
    into v_ids, v_payloads
  from counted c
  where c.remaining_steps = 0 and c.status = 'completed';

  perform pgflow._emit_runs(v_ids, 'completed', v_payloads);
end;
$$;

-- One update counts n completed tasks off a step's state and, when none
-- remains, completes the step (at now); returns the state afterwards. Shared by
-- complete_task and _count_down_step.
create or replace function pgflow._count_down_state(run_id uuid, step_slug text, n int,
                                                    now timestamptz)
returns pgflow.step_states
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_state pgflow.step_states;
begin
  update pgflow.step_states
     set remaining_tasks = greatest(remaining_tasks - _count_down_state.n, 0),
         status = case when remaining_tasks - _count_down_state.n <= 0 then 'completed' else status end,
         started_at = case when remaining_tasks - _count_down_state.n <= 0
                           then coalesce(started_at, _count_down_state.now) else started_at end,
         completed_at = case when remaining_tasks - _count_down_state.n <= 0
                             then _count_down_state.now else completed_at end
   where run_id = _count_down_state.run_id and step_slug = _count_down_state.step_slug
  returning * into v_state;
  return v_state;
end;
$$;

-- Counts `n` completed tasks off a step; when none remains the step completes
-- (output: a single step's `single_output`, a map's task outputs in order),
-- dependents that became ready start, and the run completes if nothing is left.
create or replace function pgflow._count_down_step(
  run_id uuid, step_slug text, step_type text, n int, single_output jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_state pgflow.step_states;
  v_remaining_steps int;
begin
  v_state := pgflow._count_down_state(_count_down_step.run_id, _count_down_step.step_slug,
    _count_down_step.n, pgflow.now());
  if v_state.status is distinct from 'completed' then
    return;
  end if;
  v_remaining_steps := pgflow._step_completed(v_state, _count_down_step.step_type,
    case when _count_down_step.step_type = 'map'
      then pgflow._step_output(_count_down_step.run_id, _count_down_step.step_slug, 'map')
      else _count_down_step.single_output end);
  -- Only dependents can become ready (and, through the empty-map cascade, complete
  -- the run); a leaf step's completion can only end the run.
  if exists (select 1 from pgflow.deps d
             where d.flow_slug = v_state.flow_slug and d.dep_slug = _count_down_step.step_slug) then
    perform pgflow.start_ready_steps(_count_down_step.run_id);
    perform pgflow.maybe_complete_run(_count_down_step.run_id);
  elsif v_remaining_steps = 0 then
    perform pgflow.maybe_complete_run(_count_down_step.run_id);
  end if;
end;
$$;

-- _count_down_step for many (run, step) groups at once: complete_tasks' set-based
-- path, whose groups are started steps of started runs that the caller has
-- locked, in lock order, with no single step feeding a map among them. All
-- steps count down in one UPDATE; the completed ones announce it, hand their
-- outputs on and count their runs down (_count_down_runs, which completes the
-- runs left with no step) in one statement each. The runs whose dependents
-- became ready start them together (_start_ready_steps_of). For each run, the
-- events keep their causal order: a step's step:completed before its
-- dependents' step:started, run:completed last.
create or replace function pgflow._count_down_steps(
  run_ids uuid[], step_slugs text[], step_types text[], ns int[], single_outputs jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_now timestamptz := pgflow.now();
  v_runs uuid[];
  v_steps text[];
  v_flows text[];
  v_sizes int[];
  v_payloads jsonb[];
  v_feeding uuid[];
  v_count_runs uuid[];
  v_count_ns int[];
begin
  -- One UPDATE counts every group off (by key; the caller locked the runs).
  with counted as (
    update pgflow.step_states ss
       set remaining_tasks = greatest(ss.remaining_tasks - g.n, 0),
           status = case when ss.remaining_tasks - g.n <= 0 then 'completed' else ss.status end,
           started_at = case when ss.remaining_tasks - g.n <= 0
                             then coalesce(ss.started_at, v_now) else ss.started_at end,
           completed_at = case when ss.remaining_tasks - g.n <= 0 then v_now else ss.completed_at end
      from unnest(_count_down_steps.run_ids, _count_down_steps.step_slugs, _count_down_steps.step_types,
                  _count_down_steps.ns, _count_down_steps.single_outputs)
             with ordinality as g(run_id, step_slug, step_type, n, output, ord)
     where ss.run_id = g.run_id and ss.step_slug = g.step_slug
       -- The keys again, as conditions of the table alone: whichever side the
       -- plan reads first, the table is read by key (ARCHITECTURE.md, "Key
       -- lookups stay key lookups").
       and ss.run_id = any(_count_down_steps.run_ids)
       and ss.step_slug = any(_count_down_steps.step_slugs)
    returning ss.run_id, ss.step_slug, ss.flow_slug, ss.status, ss.initial_tasks, ss.started_at,
              ss.completed_at, g.step_type, g.output, g.ord
  )
  select array_agg(c.run_id order by c.ord), array_agg(c.step_slug order by c.ord),
         array_agg(c.flow_slug order by c.ord), array_agg(c.initial_tasks order by c.ord),
         array_agg(jsonb_build_object(
           'output', case when c.step_type = 'map'
                          then pgflow._step_output(c.run_id, c.step_slug, 'map') else c.output end,
           'started_at', c.started_at, 'completed_at', c.completed_at) order by c.ord)
    into v_runs, v_steps, v_flows, v_sizes, v_payloads
  from counted c
  where c.status = 'completed';
  if v_runs is null then
    return;
  end if;

  perform pgflow._emit_steps(v_runs, v_steps, 'completed', v_payloads);

  -- Dependents count their completed dependencies off. A map depends on one
  -- step only, here a map (single steps feeding a map are not in this path):
  -- its task count is that map's.
  -- The runs it touches are those with a completed step that has dependents.
  with counted as (
    update pgflow.step_states ss
       set remaining_deps = ss.remaining_deps - x.completed_deps,
           initial_tasks = case when x.step_type = 'map' then x.map_size else ss.initial_tasks end
      from (
        select c.run_id, d.step_slug, s.step_type, count(*)::int as completed_deps,
               max(c.initial_tasks) as map_size
        from unnest(v_runs, v_steps, v_flows, v_sizes) as c(run_id, dep_slug, flow_slug, initial_tasks)
        join pgflow.deps d on d.flow_slug = c.flow_slug and d.dep_slug = c.dep_slug
        join pgflow.steps s on s.flow_slug = d.flow_slug and s.step_slug = d.step_slug
        group by c.run_id, d.step_slug, s.step_type
      ) x
     where ss.run_id = x.run_id and ss.step_slug = x.step_slug
       and ss.run_id = any(v_runs)
    returning ss.run_id
  )
  select array_agg(distinct c.run_id) into v_feeding from counted c;

  -- Each run counts its completed steps off, in one update; those left with
  -- none complete in it. (A run in v_feeding is never one of them: its
  -- completed step's dependents still count.) Before any step starts, as in
  -- _count_down_step: settling a ready step may skip steps or end the run.
  select array_agg(k.run_id order by k.run_id), array_agg(k.n order by k.run_id)
    into v_count_runs, v_count_ns
  from (select c.run_id, count(*)::int as n from unnest(v_runs) as c(run_id) group by c.run_id) k;
  perform pgflow._count_down_runs(v_count_runs, v_count_ns);

  -- As _count_down_step: dependents that became ready start (and, through the
  -- empty-map cascade, may complete their run).
  if v_feeding is not null then
    perform pgflow._start_ready_steps_of(v_feeding);
  end if;
end;
$$;

-- start_ready_steps, then maybe_complete_run, for many runs at once (the runs of
-- a batch of reports, locked by the caller). One probe finds the ready steps of
-- every run. (A map that gets ready here maps over a map: its tasks read their
-- own source tasks, no elements to write; complete_tasks leaves single steps
-- that feed a map to complete_task.) A run with a ready step that has a
-- condition or no tasks goes through start_ready_steps and maybe_complete_run
-- alone, since settling may skip, fail or complete steps and so end the run.
-- The other runs' ready steps start together: one update of their states, one
-- send per flow and start delay for all their tasks (pgmq assigns ascending ids
-- in array order, so the messages and tasks are zipped by position), one insert
-- of the tasks and one batch of step:started events. None of those runs can end
-- here: each started a step with tasks.
create or replace function pgflow._start_ready_steps_of(run_ids uuid[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_now timestamptz := pgflow.now();
  v_settling uuid[];
  v_runs uuid[];
  v_steps text[];
  v_flows text[];
  v_counts int[];
  v_delays int[];
  v_send record;
  v_task_runs uuid[];
  v_task_steps text[];
  v_task_indexes int[];
  v_msg_ids bigint[];
  v_run uuid;
begin
  -- Each run's ready steps through its states (a fenced primary-key lookup by run).
  select array_agg(distinct x.run_id) filter (where x.run_settles),
         array_agg(x.run_id order by x.run_id, x.step_index) filter (where not x.run_settles),
         array_agg(x.step_slug order by x.run_id, x.step_index) filter (where not x.run_settles),
         array_agg(x.flow_slug order by x.run_id, x.step_index) filter (where not x.run_settles),
         array_agg(x.initial_tasks order by x.run_id, x.step_index) filter (where not x.run_settles),
         array_agg(x.start_delay order by x.run_id, x.step_index) filter (where not x.run_settles)
    into v_settling, v_runs, v_steps, v_flows, v_counts, v_delays
  from (
    select r.run_id, ss.step_slug, ss.flow_slug, ss.initial_tasks, s.step_index,
           coalesce(s.opt_start_delay, 0) as start_delay,
           bool_or(s.required_input_pattern is not null or s.forbidden_input_pattern is not null
                   or coalesce(ss.initial_tasks, 0) = 0) over (partition by r.run_id) as run_settles
    from unnest(_start_ready_steps_of.run_ids) as r(run_id)
    cross join lateral (
      select ss.step_slug, ss.flow_slug, ss.initial_tasks from pgflow.step_states ss
      where ss.run_id = r.run_id and ss.status = 'created' and ss.remaining_deps = 0
      offset 0) ss
    join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
  ) x;

  if v_runs is not null then
    update pgflow.step_states ss
       set status = 'started', started_at = v_now, remaining_tasks = f.n
      from unnest(v_runs, v_steps, v_counts) as f(run_id, step_slug, n)
     where ss.run_id = f.run_id and ss.step_slug = f.step_slug
       and ss.run_id = any(v_runs) and ss.step_slug = any(v_steps); -- by key (_count_down_steps)

    for v_send in
      select distinct f.flow_slug, f.start_delay
      from unnest(v_flows, v_delays) as f(flow_slug, start_delay)
      order by f.flow_slug, f.start_delay
    loop
      select array_agg(f.run_id order by f.ord, i), array_agg(f.step_slug order by f.ord, i),
             array_agg(i order by f.ord, i)
        into v_task_runs, v_task_steps, v_task_indexes
      from unnest(v_runs, v_steps, v_flows, v_counts, v_delays)
             with ordinality as f(run_id, step_slug, flow_slug, n, start_delay, ord)
      cross join lateral generate_series(0, f.n - 1) as i
      where f.flow_slug = v_send.flow_slug and f.start_delay = v_send.start_delay;
      v_msg_ids := array(
        select b.msg_id
        from pgflow._queue_send(v_send.flow_slug,
               array(select pgflow._task_message(v_send.flow_slug, u.run_id, u.step_slug, u.idx)
                     from unnest(v_task_runs, v_task_steps, v_task_indexes)
                            with ordinality as u(run_id, step_slug, idx, ord)
                     order by u.ord),
               v_send.start_delay) as b(msg_id)
        order by b.msg_id);
      insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at)
      select v_send.flow_slug, u.run_id, u.step_slug, u.idx, u.msg_id, v_now
      from unnest(v_task_runs, v_task_steps, v_task_indexes, v_msg_ids) as u(run_id, step_slug, idx, msg_id);
      -- A hint for workers that LISTEN, as in start_ready_steps.
      if v_send.start_delay = 0 then
        perform pgflow._announce_ready(v_send.flow_slug);
      end if;
    end loop;

    perform pgflow._emit_steps(v_runs, v_steps, 'started', array(
      select jsonb_build_object('remaining_tasks', f.n, 'remaining_deps', 0, 'started_at', v_now)
      from unnest(v_counts) with ordinality as f(n, ord)
      order by f.ord));
  end if;

  for v_run in select r.run_id from unnest(v_settling) as r(run_id) order by r.run_id loop
    perform pgflow.start_ready_steps(v_run);
    perform pgflow.maybe_complete_run(v_run);
  end loop;
end;
$$;

-- ==== sql/engine/start_flow.sql ====
-- Starting runs: start_flow and start_flow_with_states.

-- start_flow runs with its owner's rights so a client role needs only EXECUTE
-- on it (see README, "Grants"), not write access to the tables and queues.
create or replace function pgflow.start_flow(flow_slug text, input jsonb, run_id uuid default null)
returns setof pgflow.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_what text := format('start_flow(%L)', start_flow.flow_slug);
  v_run pgflow.runs;
  v_steps int;
  v_root_map text;
  v_root_settles boolean;
  v_input_length int;
  v_step record;
  v_run_ids uuid[];
  v_events text[];
  v_payloads jsonb[];
begin
  -- One look at the flow's steps answers every question the start asks of them.
  select count(*),
         (array_agg(s.step_slug order by s.step_index)
            filter (where s.step_type = 'map' and s.deps_count = 0))[1],
         coalesce(bool_or(s.deps_count = 0 and (s.step_type = 'map'
                    or s.required_input_pattern is not null or s.forbidden_input_pattern is not null)),
                  false)
    into v_steps, v_root_map, v_root_settles
  from pgflow.steps s where s.flow_slug = start_flow.flow_slug;
  if v_steps = 0 then
    perform pgflow._require_flow(v_what, start_flow.flow_slug);
  end if;
  if start_flow.input is null then
    perform pgflow._raise_invalid(format(
      '%s: input must not be SQL NULL; pass ''null''::jsonb for a JSON null', v_what));
  end if;
  if v_steps = 0 then
    perform pgflow._raise_invalid(format('%s: the flow has no steps; add steps with pgflow.add_step', v_what));
  end if;
  if v_root_map is not null and jsonb_typeof(start_flow.input) <> 'array' then
    perform pgflow._raise_invalid(format(
      '%s: root map step %L maps over the flow input, which must be a JSON array; got %s',
      v_what, v_root_map, jsonb_typeof(start_flow.input)));
  end if;
  -- Computed outside SQL: the planner may fold jsonb_array_length of a
  -- parameter even in a CASE branch that would not be taken.
  if jsonb_typeof(start_flow.input) = 'array' then
    v_input_length := jsonb_array_length(start_flow.input);
  end if;

  -- ON CONFLICT rather than an exception block: a block is a subtransaction, and
  -- thousands of them in one statement (start_flow per row of a query) cost every
  -- session of the server.
  insert into pgflow.runs (run_id, flow_slug, input, remaining_steps, started_at)
  values (coalesce(start_flow.run_id, gen_random_uuid()), start_flow.flow_slug, start_flow.input, v_steps,
          pgflow.now())
  on conflict (run_id) do nothing
  returning * into v_run;
  if v_run.run_id is null then
    perform pgflow._raise_invalid(format('%s: run %s already exists', v_what, start_flow.run_id));
  end if;

  if v_root_settles then
    -- A root step with a condition, or a root map (which may have no tasks):
    -- settling decides whether each starts, is skipped or completes at once,
    -- and the run may complete with it.
    insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, created_at, initial_tasks)
    select s.flow_slug, v_run.run_id, s.step_slug, s.deps_count, v_run.started_at,
           case
             when s.step_type = 'single' then 1
             when s.deps_count = 0 then v_input_length
           end
    from pgflow.steps s
    where s.flow_slug = start_flow.flow_slug;

    perform pgflow._emit_run(v_run.run_id, 'started',
      jsonb_build_object('flow_slug', v_run.flow_slug, 'input', v_run.input,
                         'remaining_steps', v_run.remaining_steps, 'started_at', v_run.started_at));
    perform pgflow.start_ready_steps(v_run.run_id);
    perform pgflow.maybe_complete_run(v_run.run_id);
    return query select * from pgflow.runs where run_id = v_run.run_id;
    return;
  end if;

  -- Every root step is a single step without a condition: it starts as its
  -- state is created (one write per state, where start_ready_steps would
  -- update it again), with the same rows, messages and events, the events in
  -- the same order: run:started, then each root step in step order. (The
  -- queue's wake-up, on its own channel, goes before them, not after run:started.)
  insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, created_at, initial_tasks,
                                  status, started_at, remaining_tasks)
  select s.flow_slug, v_run.run_id, s.step_slug, s.deps_count, v_run.started_at,
         case when s.step_type = 'single' then 1 end,
         case when s.deps_count = 0 then 'started' else 'created' end,
         case when s.deps_count = 0 then v_run.started_at end,
         case when s.deps_count = 0 then 1 end
  from pgflow.steps s
  where s.flow_slug = start_flow.flow_slug;

  -- The events _emit_run and _emit_step would send, for one _emit_each.
  v_run_ids := array[v_run.run_id];
  v_events := array['run:started'];
  v_payloads := array[jsonb_build_object('flow_slug', v_run.flow_slug, 'input', v_run.input,
    'remaining_steps', v_run.remaining_steps, 'started_at', v_run.started_at)];
  for v_step in
    select s.step_slug, coalesce(s.opt_start_delay, 0) as start_delay
    from pgflow.steps s
    where s.flow_slug = start_flow.flow_slug and s.deps_count = 0
    order by s.step_index
  loop
    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at)
    select start_flow.flow_slug, v_run.run_id, v_step.step_slug, 0, sent.msg_id, v_run.started_at
    from pgflow._queue_send(start_flow.flow_slug,
      array[pgflow._task_message(start_flow.flow_slug, v_run.run_id, v_step.step_slug, 0)],
      v_step.start_delay) as sent(msg_id);
    -- A hint for workers that LISTEN (see README, "Worker wake-up").
    if v_step.start_delay = 0 then
      perform pgflow._announce_ready(start_flow.flow_slug);
    end if;
    v_run_ids := v_run_ids || v_run.run_id;
    v_events := v_events || ('step:' || v_step.step_slug || ':started');
    v_payloads := v_payloads || jsonb_build_object('remaining_tasks', 1, 'remaining_deps', 0,
      'started_at', v_run.started_at);
  end loop;
  -- One trust check of realtime.send for all of the run's events.
  perform pgflow._emit_each(v_run_ids, v_events, v_payloads);

  return next v_run;
end;
$$;

create or replace function pgflow.start_flow_with_states(flow_slug text, input jsonb, run_id uuid default null)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_run_id uuid;
begin
  select r.run_id into v_run_id
  from pgflow.start_flow(start_flow_with_states.flow_slug, start_flow_with_states.input,
                         start_flow_with_states.run_id) r;
  return pgflow.get_run_with_states(v_run_id);
end;
$$;

-- Starts many runs of one flow set-based: one statement per table instead of one
-- start_flow per run, one pgmq.send_batch per root step for all runs' tasks, one
-- wake-up. Same rows, messages and events as start_flow once per input, in order.
-- run_ids (optional) gives each run its id (a NULL element: generated). Returns
-- the runs in input order. (An edgeflow extension; pgflow has no such call.)
create or replace function pgflow.start_flows(flow_slug text, inputs jsonb[], run_ids uuid[] default null)
returns setof pgflow.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_what text := format('start_flows(%L)', start_flows.flow_slug);
  v_count int := coalesce(cardinality(start_flows.inputs), 0);
  v_now timestamptz := pgflow.now();
  v_steps int;
  v_root_map text;
  v_bad int;
  v_run_ids uuid[];
  v_fast uuid[];
  v_slow uuid[];
  v_step record;
  v_id uuid;
  v_task_runs uuid[];
  v_task_indexes int[];
  v_task_elements jsonb[];
  v_msg_ids bigint[];
  v_fast_inputs jsonb[];
begin
  perform pgflow._require_flow(v_what, start_flows.flow_slug);
  if start_flows.inputs is null then
    perform pgflow._raise_invalid(format('%s: inputs must not be NULL; pass an array of jsonb', v_what));
  end if;
  v_bad := array_position(start_flows.inputs, null);
  if v_bad is not null then
    perform pgflow._raise_invalid(format(
      '%s: inputs[%s] is SQL NULL; pass ''null''::jsonb for a JSON null', v_what, v_bad));
  end if;
  if start_flows.run_ids is not null and cardinality(start_flows.run_ids) <> v_count then
    perform pgflow._raise_invalid(format('%s: run_ids has %s elements but inputs has %s', v_what,
      cardinality(start_flows.run_ids), v_count));
  end if;
  select count(*) into v_steps from pgflow.steps where flow_slug = start_flows.flow_slug;
  if v_steps = 0 then
    perform pgflow._raise_invalid(format('%s: the flow has no steps; add steps with pgflow.add_step', v_what));
  end if;
  select step_slug into v_root_map from pgflow.steps
  where flow_slug = start_flows.flow_slug and step_type = 'map' and deps_count = 0
  order by step_index limit 1;
  if v_root_map is not null then
    select u.ord into v_bad from unnest(start_flows.inputs) with ordinality u(input, ord)
    where jsonb_typeof(u.input) <> 'array' order by u.ord limit 1;
    if v_bad is not null then
      perform pgflow._raise_invalid(format(
        '%s: root map step %L maps over the flow input, which must be a JSON array; inputs[%s] is %s',
        v_what, v_root_map, v_bad, jsonb_typeof(start_flows.inputs[v_bad])));
    end if;
  end if;
  if v_count = 0 then
    return;
  end if;

  v_run_ids := array(select coalesce(start_flows.run_ids[o], gen_random_uuid())
                     from generate_series(1, v_count) o order by o);
  with inserted as (
    insert into pgflow.runs (run_id, flow_slug, input, remaining_steps, started_at)
    select u.run_id, start_flows.flow_slug, u.input, v_steps, v_now
    from unnest(v_run_ids, start_flows.inputs) u(run_id, input)
    on conflict (run_id) do nothing
    returning 1
  )
  select count(*) into v_bad from inserted;
  if v_bad <> v_count then
    perform pgflow._raise_invalid(format('%s: a run with one of run_ids already exists, or run_ids repeats one',
      v_what));
  end if;

  -- A root map over an empty array completes at once (and may complete the run):
  -- those runs take start_flow's per-run path below. The others' root steps are
  -- started as their states are created. (Nothing here reads the new rows back:
  -- the planner's statistics would still call these tables empty.)
  if v_root_map is not null then
    v_slow := array(select u.run_id from unnest(v_run_ids, start_flows.inputs) u(run_id, input)
                    where jsonb_array_length(u.input) = 0);
  end if;
  select coalesce(array_agg(u.run_id order by u.ord), '{}'), coalesce(array_agg(u.input order by u.ord), '{}')
    into v_fast, v_fast_inputs
  from unnest(v_run_ids, start_flows.inputs) with ordinality u(run_id, input, ord)
  where not (u.run_id = any(coalesce(v_slow, '{}')));

  insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, created_at, initial_tasks,
                                  status, started_at, remaining_tasks)
  select s.flow_slug, u.run_id, s.step_slug, s.deps_count, v_now, t.n,
         case when starts then 'started' else 'created' end,
         case when starts then v_now end,
         case when starts then t.n end
  from unnest(v_run_ids, start_flows.inputs) u(run_id, input)
  cross join pgflow.steps s
  cross join lateral (select case
                               when s.step_type = 'single' then 1
                               when s.deps_count = 0 then jsonb_array_length(u.input)
                             end as n,
                             s.deps_count = 0 and not (u.run_id = any(coalesce(v_slow, '{}'))) as starts) t
  where s.flow_slug = start_flows.flow_slug;

  perform pgflow._emit_runs(v_run_ids, 'started', array(
    select jsonb_build_object('flow_slug', start_flows.flow_slug, 'input', u.input,
                              'remaining_steps', v_steps, 'started_at', v_now)
    from unnest(start_flows.inputs) with ordinality u(input, ord)
    order by u.ord));

  for v_step in
    select s.step_slug, s.step_type, coalesce(s.opt_start_delay, 0) as start_delay
    from pgflow.steps s
    where s.flow_slug = start_flows.flow_slug and s.deps_count = 0
    order by s.step_index
  loop
    -- The step's tasks of every run, in run order; pgmq assigns ascending ids in
    -- array order, so the n-th smallest id is task n's; zipped by position. A
    -- root map's tasks carry their elements (step_tasks.element, as
    -- start_ready_steps writes them), from one pass over each input.
    select coalesce(array_agg(f.run_id order by f.ord, x.i), '{}'),
           coalesce(array_agg(x.i order by f.ord, x.i), '{}'),
           coalesce(array_agg(x.element order by f.ord, x.i), '{}')
      into v_task_runs, v_task_indexes, v_task_elements
    from unnest(v_fast, v_fast_inputs) with ordinality f(run_id, input, ord)
    cross join lateral (
      select 0 as i, null::jsonb as element where v_step.step_type = 'single'
      union all
      select (e.ord - 1)::int, e.value
      from jsonb_array_elements(case when v_step.step_type = 'map' then f.input end)
             with ordinality as e(value, ord)) x;
    v_msg_ids := array(
      select b.msg_id
      from pgflow._queue_send(start_flows.flow_slug,
             array(select pgflow._task_message(start_flows.flow_slug, u.run_id, v_step.step_slug, u.idx)
                   from unnest(v_task_runs, v_task_indexes) with ordinality u(run_id, idx, ord)
                   order by u.ord),
             v_step.start_delay) as b(msg_id)
      order by b.msg_id);
    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at,
                                   element)
    select start_flows.flow_slug, u.run_id, v_step.step_slug, u.idx, u.msg_id, v_now, u.element
    from unnest(v_task_runs, v_task_indexes, v_msg_ids, v_task_elements)
           u(run_id, idx, msg_id, element);

    if v_step.start_delay = 0 and cardinality(v_fast) > 0 then
      perform pgflow._announce_ready(start_flows.flow_slug);
    end if;

    perform pgflow._emit_steps(v_fast, array_fill(v_step.step_slug::text, array[cardinality(v_fast)]),
      'started', array(
        select jsonb_build_object(
          'remaining_tasks', case when v_step.step_type = 'single' then 1 else jsonb_array_length(f.input) end,
          'remaining_deps', 0, 'started_at', v_now)
        from unnest(v_fast_inputs) with ordinality f(input, ord)
        order by f.ord));
  end loop;

  foreach v_id in array coalesce(v_slow, '{}') loop
    perform pgflow.start_ready_steps(v_id);
    perform pgflow.maybe_complete_run(v_id);
  end loop;

  return query
    select r.* from unnest(v_run_ids) with ordinality u(run_id, ord)
    join pgflow.runs r on r.run_id = u.run_id
    where r.run_id = any(v_run_ids) -- by key, whichever side the plan reads first
    order by u.ord;
end;
$$;

-- ==== sql/engine/claiming.sql ====
-- Claiming tasks, the second phase of a worker's poll: after pgmq.read, start_tasks
-- marks the read messages' tasks started and hands back their inputs.

-- Sets each message's visibility timeout (seconds from now) in one statement.
-- As in pgflow: NULL or empty arrays change nothing and return no rows; the
-- rows are the updated messages (pgmq's message columns).
-- pgmq names a queue's table q_<lower-cased queue name>.
create or replace function pgflow.set_vt_batch(queue_name text, msg_ids bigint[], vt_offsets int[])
returns table (msg_id bigint, read_ct int, enqueued_at timestamptz, vt timestamptz, message jsonb, headers jsonb)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if set_vt_batch.msg_ids is null or set_vt_batch.vt_offsets is null
     or coalesce(cardinality(set_vt_batch.msg_ids), 0) = 0 then
    return;
  end if;
  if cardinality(set_vt_batch.msg_ids) <> cardinality(set_vt_batch.vt_offsets) then
    raise exception 'set_vt_batch(%): msg_ids has % elements but vt_offsets has %',
      set_vt_batch.queue_name, cardinality(set_vt_batch.msg_ids), cardinality(set_vt_batch.vt_offsets)
      using errcode = 'invalid_parameter_value';
  end if;
  if array_position(set_vt_batch.vt_offsets, null) is not null then
    raise exception 'set_vt_batch(%): vt_offsets must not contain NULL', set_vt_batch.queue_name
      using errcode = 'invalid_parameter_value';
  end if;
  if to_regclass(format('pgmq.%I', 'q_' || lower(set_vt_batch.queue_name))) is null then
    raise exception 'set_vt_batch: queue % does not exist', coalesce(quote_literal(set_vt_batch.queue_name), 'NULL')
      using errcode = 'no_data_found';
  end if;
  return query execute format(
    'update pgmq.%I q
        set vt = clock_timestamp() + make_interval(secs => v.vt_offset)
       from unnest($1, $2) as v(msg_id, vt_offset)
      where q.msg_id = v.msg_id
  returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
    'q_' || lower(set_vt_batch.queue_name))
  using set_vt_batch.msg_ids, set_vt_batch.vt_offsets;
end;
$$;

-- Phase 2 of polling: turns the messages a worker reserved with
-- pgmq.read_with_poll into started tasks with their inputs. A message whose
-- task is still 'started' past the step timeout came back because its worker
-- vanished: that attempt counts as failed (retry with backoff, or fail).
-- Each row carries the task's input ({"run": flow input, <dep>: output, ...},
-- or a map's element) and flow_input: for a root single step the run's input,
-- which pgflow 0.12+ workers hand to it, else NULL (as in pgflow).
create or replace function pgflow.start_tasks(flow_slug text, msg_ids bigint[], worker_id uuid)
returns setof pgflow.step_task_record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  return query select * from pgflow._start_tasks(start_tasks.flow_slug, start_tasks.msg_ids,
    start_tasks.worker_id, vt_is_set => false, maybe_stale => start_tasks.msg_ids);
end;
$$;

-- start_tasks' body. vt_is_set: the messages were read by _read_claimed_messages,
-- which already hid each one for its step's timeout, so setting it again would
-- only cost another dynamic statement. maybe_stale: the messages that may have
-- come back for a stalled task, the only ones the stall check looks up. A
-- message read for the first time (read_ct 1) cannot have: starting its task
-- took a read. start_tasks, whose caller read the messages, passes them all.
create or replace function pgflow._start_tasks(flow_slug text, msg_ids bigint[], worker_id uuid,
  vt_is_set boolean, maybe_stale bigint[])
returns setof pgflow.step_task_record
language plpgsql
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_what text := format('start_tasks(%L)', _start_tasks.flow_slug);
  -- Once: in a many-row statement a function call runs for every row.
  v_now timestamptz := pgflow.now();
  v_stale_ids bigint[];
  v_runs uuid[];
  v_steps text[];
  v_indexes int[];
  v_msgs bigint[];
  v_stored jsonb[];
  v_group record;
  v_elements jsonb;
  v_dep record;
begin
  perform pgflow._require_flow(v_what, _start_tasks.flow_slug);
  if _start_tasks.worker_id is null then
    perform pgflow._raise_invalid(format('%s: worker_id must not be NULL', v_what));
  end if;
  if _start_tasks.msg_ids is null or cardinality(_start_tasks.msg_ids) = 0 then
    return;
  end if;

  v_stale_ids := case when cardinality(_start_tasks.maybe_stale) > 0
    then pgflow._fail_stalled_tasks(_start_tasks.flow_slug, _start_tasks.maybe_stale)
    else '{}' end;

  with picked as (
    update pgflow.step_tasks t
       set status = 'started',
           started_at = v_now,
           attempts_count = t.attempts_count + 1,
           last_worker_id = _start_tasks.worker_id
     where t.flow_slug = _start_tasks.flow_slug
       and t.message_id = any(_start_tasks.msg_ids)
       and t.status = 'queued'
       and not (t.message_id = any(v_stale_ids))
       -- A subquery, not a join: a joined runs table could drive the plan (one
       -- started run, on statistics from before a wide map's tasks were
       -- inserted) and read every task of the run by run_id on each claim,
       -- which made a map's cost grow with the square of its width.
       and (select r.status from pgflow.runs r where r.run_id = t.run_id) = 'started'
    returning t.run_id, t.step_slug, t.task_index, t.message_id, t.element
  )
  select array_agg(run_id), array_agg(step_slug), array_agg(task_index), array_agg(message_id),
         array_agg(element)
    into v_runs, v_steps, v_indexes, v_msgs, v_stored
  from picked;

  if v_msgs is null then
    return;
  end if;

  -- The message stays hidden for the step's timeout plus a margin; if no
  -- report arrives by then it becomes visible and the attempt counts as stale.
  if not _start_tasks.vt_is_set then
    perform pgflow.set_vt_batch(_start_tasks.flow_slug, v_msgs, array(
      select coalesce(s.opt_timeout, f.opt_timeout) + 2
      from unnest(v_steps) with ordinality as p(step_slug, ord)
      join pgflow.steps s on s.flow_slug = _start_tasks.flow_slug and s.step_slug = p.step_slug
      join pgflow.flows f on f.flow_slug = s.flow_slug
      order by p.ord));
  end if;

  -- Single steps (one task each), all in one statement: the input is {"run":
  -- the run's input, <dep>: its output, ...}; a skipped dependency is an
  -- absent key. As in pgflow, flow_input only for root single steps. Others
  -- would carry the whole run input once per task (a root map's input is that
  -- array itself); workers load it when a handler asks.
  return query
    select _start_tasks.flow_slug, p.run_id, p.step_slug,
           jsonb_build_object('run', r.input) || coalesce((
             select jsonb_object_agg(d.dep_slug, pgflow._step_output(p.run_id, d.dep_slug, ds.step_type))
             from pgflow.deps d
             join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
             join pgflow.step_states dss
               on dss.run_id = p.run_id and dss.step_slug = d.dep_slug and dss.status = 'completed'
             where d.flow_slug = _start_tasks.flow_slug and d.step_slug = p.step_slug), '{}'::jsonb),
           p.message_id, p.task_index,
           case when s.deps_count = 0 then r.input end
    from unnest(v_runs, v_steps, v_indexes, v_msgs) as p(run_id, step_slug, task_index, message_id)
    join pgflow.steps s on s.flow_slug = _start_tasks.flow_slug and s.step_slug = p.step_slug
    -- The run by key (fenced: see the update above).
    cross join lateral (select r.input from pgflow.runs r where r.run_id = p.run_id offset 0) r
    where s.step_type = 'single';

  -- Map steps per (run, step), so a map's source array is read once per call.
  for v_group in
    select p.run_id, p.step_slug,
           array_agg(p.task_index order by p.task_index) as task_indexes,
           array_agg(p.message_id order by p.task_index) as message_ids,
           array_agg(p.element order by p.task_index) as elements,
           bool_and(p.element is not null) as all_stored, s.deps_count
    from unnest(v_runs, v_steps, v_indexes, v_msgs, v_stored)
           as p(run_id, step_slug, task_index, message_id, element)
    join pgflow.steps s on s.flow_slug = _start_tasks.flow_slug and s.step_slug = p.step_slug
    where s.step_type = 'map'
    group by p.run_id, p.step_slug, s.deps_count
  loop
    -- The elements the map's start wrote with its tasks (step_tasks.element).
    if v_group.all_stored then
      v_elements := to_jsonb(v_group.elements);
    else
      select d.dep_slug, ds.step_type into v_dep
      from pgflow.deps d
      join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
      where d.flow_slug = _start_tasks.flow_slug and d.step_slug = v_group.step_slug;

      if v_dep.step_type = 'map' then
        -- Map over a map: element i is task i's output of the source map.
        return query
          select _start_tasks.flow_slug, v_group.run_id, v_group.step_slug, src.output, u.msg_id,
                 u.idx, null::jsonb
          from unnest(v_group.task_indexes, v_group.message_ids) as u(idx, msg_id)
          -- One key lookup per element (OFFSET 0: as a join, the plan may read
          -- every task of the source map).
          cross join lateral (
            select t.output from pgflow.step_tasks t
            where t.run_id = v_group.run_id and t.step_slug = v_dep.dep_slug and t.task_index = u.idx
            offset 0) src
          order by u.idx;
        continue;
      end if;

      -- Tasks created without elements (by pgflow, or before release 002): the
      -- array's, in one call. A large array is stored compressed out of line,
      -- and each "source -> i" would fetch and decompress all of it again (a
      -- claim's cost would grow with the map's width). The path lists the
      -- indexes in task order; strict, so a missing element is an error, not a
      -- shift.
      v_elements := jsonb_path_query_array(
        pgflow._map_source(v_group.run_id, _start_tasks.flow_slug, v_group.step_slug,
                           v_group.deps_count),
        format('strict $[%s]', array_to_string(v_group.task_indexes, ','))::jsonpath);
    end if;
    return query
      select _start_tasks.flow_slug, v_group.run_id, v_group.step_slug,
             v_elements -> (u.ord - 1)::int, u.msg_id, u.idx, null::jsonb
      from unnest(v_group.task_indexes, v_group.message_ids) with ordinality as u(idx, msg_id, ord)
      order by u.idx;
  end loop;
end;
$$;

-- Phase 1 of a claim by read_and_start_tasks: reserves up to qty visible
-- messages of the flow's queue as pgmq.read does (oldest first, read_ct + 1,
-- skipping locked ones), and in the same statement hides each one for its
-- step's timeout plus the margin, the vt start_tasks would give it next.
-- pgmq.read and then set_vt_batch cost two dynamic statements (each parsed and
-- planned on every call) where this is one. A message naming no step of the
-- flow keeps the claim's vt.
create or replace function pgflow._read_claimed_messages(flow_slug text, vt int, qty int)
returns setof pgmq.message_record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_steps text[];
  v_hidden_for int[];
begin
  -- Looked up here, not in _queue_claim's statement: for a queue it has no
  -- branch for, that one is planned on every call, and a subquery there costs
  -- more to plan than this costs to run.
  select array_agg(s.step_slug), array_agg(coalesce(s.opt_timeout, f.opt_timeout) + 2)
    into v_steps, v_hidden_for
  from pgflow.steps s
  join pgflow.flows f on f.flow_slug = s.flow_slug
  where s.flow_slug = _read_claimed_messages.flow_slug;
  return query select * from pgflow._queue_claim(_read_claimed_messages.flow_slug,
    _read_claimed_messages.qty, v_steps, v_hidden_for, _read_claimed_messages.vt);
end;
$$;

-- A claim's vt (seconds a message stays hidden) and qty (most tasks to claim),
-- checked the same way by every call that claims.
create or replace function pgflow._check_claim_size(what text, vt int, qty int)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if qty is null or qty < 0 or vt is null or vt < 1 then
    perform pgflow._raise_invalid(format('%s: qty must be >= 0 and vt >= 1, got qty %s, vt %s',
      what, coalesce(qty::text, 'NULL'), coalesce(vt::text, 'NULL')));
  end if;
end;
$$;

-- Both phases of a poll in one transaction: _read_claimed_messages claims up to
-- qty visible messages of the flow's queue (as pgmq.read), start_tasks starts
-- their tasks. A worker that dies between the phases cannot leave a message
-- claimed but its task queued.
-- Each row is a started task with its message and "attempt" (1 = the first).
-- (An edgeflow extension; complete_task_and_claim claims through it too.)
--
-- Two statements on purpose: a statement sees the rows committed when it
-- began, but the read, a function, reads with a newer snapshot. Joined in
-- one statement, a message committed in between would be claimed and started
-- while the statement could not see its task: the worker would never get it.
create or replace function pgflow.read_and_start_tasks(flow_slug text, vt int, qty int, worker_id uuid)
returns setof pgflow.claimed_task
language plpgsql
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_messages pgmq.message_record[];
begin
  perform pgflow._check_claim_size(format('read_and_start_tasks(%L)', read_and_start_tasks.flow_slug),
    read_and_start_tasks.vt, read_and_start_tasks.qty);
  if read_and_start_tasks.worker_id is null then
    perform pgflow._raise_invalid(format('read_and_start_tasks(%L): worker_id must not be NULL',
      read_and_start_tasks.flow_slug));
  end if;
  perform pgflow._require_flow('read_and_start_tasks', read_and_start_tasks.flow_slug);
  if read_and_start_tasks.qty = 0 then
    return;
  end if;

  v_messages := array(
    select m from pgflow._read_claimed_messages(read_and_start_tasks.flow_slug,
                    read_and_start_tasks.vt, read_and_start_tasks.qty) m);
  -- For a report holding back wake-ups (wakeups.sql): whether the claim took
  -- as many messages as it could, started tasks or not.
  perform pgflow._note_claim(cardinality(v_messages) >= read_and_start_tasks.qty);
  if cardinality(v_messages) = 0 then
    return;
  end if;
  -- This statement sees step_tasks as before start_tasks counted the attempt
  -- (a function's changes are invisible to the statement calling it).
  return query
    select s.flow_slug, s.run_id, s.step_slug, s.input, s.msg_id, s.task_index, s.flow_input,
           m.read_ct, m.enqueued_at, m.vt, m.message, m.headers, t.attempts_count + 1
    from pgflow._start_tasks(read_and_start_tasks.flow_slug,
           array(select (e).msg_id from unnest(v_messages) e), read_and_start_tasks.worker_id,
           vt_is_set => true,
           maybe_stale => array(select (e).msg_id from unnest(v_messages) e where (e).read_ct > 1)) s
    join unnest(v_messages) m on m.msg_id = s.msg_id
    -- A key lookup per claimed task, fenced by OFFSET 0: as a join, the planner
    -- (which expects 1,000 rows from start_tasks) may scan the whole table.
    cross join lateral (
      select t.attempts_count from pgflow.step_tasks t
      where t.run_id = s.run_id and t.step_slug = s.step_slug and t.task_index = s.task_index
      offset 0) t;
end;
$$;

-- The long poll of a worker without LISTEN (behind a transaction pooler):
-- read_and_start_tasks every poll_interval_ms for up to max_poll_seconds,
-- returning the tasks of the first check that finds any. One statement, so
-- an idle worker gets the first tasks of a new run read and started in one
-- round trip and one commit (pgmq.read_with_poll and then start_tasks took
-- two). Each check is its own statements, seeing what committed before it.
-- (An edgeflow extension.)
create or replace function pgflow.read_and_start_tasks_with_poll(
  flow_slug text,
  vt int,
  qty int,
  worker_id uuid,
  max_poll_seconds int,
  poll_interval_ms int
)
returns setof pgflow.claimed_task
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_until timestamptz;
  v_first boolean := true;
begin
  -- As pgmq.read_with_poll, no upper bounds: a long wait holds only the caller's own session.
  if max_poll_seconds is null or max_poll_seconds < 0 or poll_interval_ms is null
     or poll_interval_ms < 1 then
    perform pgflow._raise_invalid(format(
      'read_and_start_tasks_with_poll(%L): max_poll_seconds must be >= 0 and poll_interval_ms >= 1, got %s and %s',
      read_and_start_tasks_with_poll.flow_slug, coalesce(max_poll_seconds::text, 'NULL'),
      coalesce(poll_interval_ms::text, 'NULL')));
  end if;
  v_until := pgflow.clock_now() + make_interval(secs => max_poll_seconds);
  loop
    -- After the first look (a claim, which also checks the arguments), a look
    -- is one probe of the queue's vt index and the claim runs only when it
    -- finds a visible message: a claim costs several times the probe.
    if v_first or pgflow._queue_has_visible(read_and_start_tasks_with_poll.flow_slug) then
      v_first := false;
      return query
        select * from pgflow.read_and_start_tasks(read_and_start_tasks_with_poll.flow_slug,
          read_and_start_tasks_with_poll.vt, read_and_start_tasks_with_poll.qty,
          read_and_start_tasks_with_poll.worker_id);
      if found then
        return;
      end if;
    end if;
    if pgflow.clock_now() >= v_until then
      return;
    end if;
    perform pg_catalog.pg_sleep(poll_interval_ms / 1000.0);
  end loop;
end;
$$;

-- pgflow's one-call polling, deprecated by pgflow itself in favour of
-- pgmq.read_with_poll + start_tasks. Kept so old callers do not break: it
-- claims nothing, returns no rows and says so in a NOTICE.
create or replace function pgflow.poll_for_tasks(
  queue_name text,
  vt int,
  qty int,
  max_poll_seconds int default 5,
  poll_interval_ms int default 100
)
returns setof pgflow.step_task_record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise notice 'poll_for_tasks(%) is deprecated and claims nothing: read with pgmq.read_with_poll, then call pgflow.start_tasks',
    coalesce(quote_literal(poll_for_tasks.queue_name), 'NULL');
end;
$$;

-- ==== sql/engine/failure_and_retry.sql ====
-- Failure and retry: backoff, a task's failure (retried, or terminal), and
-- failing a run.

-- Exponential backoff: base_delay * 2^attempts_count seconds, capped at the
-- largest visibility timeout pgmq accepts (int seconds). Both factors are
-- capped before multiplying, so no input overflows numeric or int.
create or replace function pgflow.calculate_retry_delay(base_delay numeric, attempts_count int)
returns int
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if base_delay is null or base_delay < 0 then
    raise exception 'calculate_retry_delay: base_delay must be >= 0, got %', coalesce(base_delay::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if attempts_count is null or attempts_count < 0 then
    raise exception 'calculate_retry_delay: attempts_count must be >= 0, got %',
      coalesce(attempts_count::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  return least(floor(least(base_delay, 2147483647) * power(2::numeric, least(attempts_count, 64))), 2147483647)::int;
end;
$$;

-- Cancels the run's open (queued or started) tasks, of one step or of all when
-- step_slug is NULL, and archives their messages so no worker picks them up.
create or replace function pgflow._cancel_open_tasks(run_id uuid, flow_slug text, step_slug text, error_message text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  perform pgflow._queue_archive(_cancel_open_tasks.flow_slug, array(
    select t.message_id from pgflow.step_tasks t
    where t.run_id = _cancel_open_tasks.run_id
      and (_cancel_open_tasks.step_slug is null or t.step_slug = _cancel_open_tasks.step_slug)
      and t.status in ('queued', 'started') and t.message_id is not null));
  update pgflow.step_tasks
     set status = 'cancelled', cancelled_at = pgflow.now(), error_message = _cancel_open_tasks.error_message
   where run_id = _cancel_open_tasks.run_id
     and (_cancel_open_tasks.step_slug is null or step_slug = _cancel_open_tasks.step_slug)
     and status in ('queued', 'started');
end;
$$;

-- Fails the run because step_slug failed: closes every open step, cancels
-- every open task of the run (status 'cancelled', as in pgflow 0.15.1) and
-- archives their messages so no worker picks them up again.
create or replace function pgflow._fail_run(run_id uuid, step_slug text, error_message text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run pgflow.runs;
  v_state pgflow.step_states;
  v_cancelled text := format('cancelled: run failed at step %s', _fail_run.step_slug);
begin
  update pgflow.step_states
     set status = 'failed', failed_at = pgflow.now(), error_message = _fail_run.error_message
   where run_id = _fail_run.run_id and step_slug = _fail_run.step_slug
  returning * into v_state;
  perform pgflow._emit_step(_fail_run.run_id, _fail_run.step_slug, 'failed',
    jsonb_build_object('error_message', _fail_run.error_message, 'started_at', v_state.started_at,
                       'failed_at', v_state.failed_at));

  for v_state in
    update pgflow.step_states
       set status = 'failed', failed_at = pgflow.now(), error_message = v_cancelled
     where run_id = _fail_run.run_id and status = 'started'
    returning *
  loop
    perform pgflow._emit_step(_fail_run.run_id, v_state.step_slug, 'failed',
      jsonb_build_object('error_message', v_cancelled, 'started_at', v_state.started_at,
                         'failed_at', v_state.failed_at));
  end loop;

  select * into v_run from pgflow.runs where run_id = _fail_run.run_id;
  perform pgflow._cancel_open_tasks(_fail_run.run_id, v_run.flow_slug, null, v_cancelled);

  update pgflow.runs set status = 'failed', failed_at = pgflow.now()
  where run_id = _fail_run.run_id
  returning * into v_run;
  perform pgflow._emit_run(v_run.run_id, 'failed',
    jsonb_build_object('flow_slug', v_run.flow_slug, 'failed_step', _fail_run.step_slug,
                       'error_message', _fail_run.error_message, 'failed_at', v_run.failed_at));
end;
$$;

-- The terminal failure of a task: the task is failed (keeping the output that
-- caused it, if any), its message archived, and the run failed with it.
create or replace function pgflow._fail_task_terminally(
  run_id uuid, step_slug text, task_index int, error_message text, output jsonb default null
)
returns pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
begin
  update pgflow.step_tasks
     set status = 'failed', failed_at = pgflow.now(), error_message = _fail_task_terminally.error_message,
         output = coalesce(_fail_task_terminally.output, output)
   where run_id = _fail_task_terminally.run_id and step_slug = _fail_task_terminally.step_slug
     and task_index = _fail_task_terminally.task_index
  returning * into v_task;
  perform pgflow._queue_archive(v_task.flow_slug, array[v_task.message_id]);
  perform pgflow._fail_run(_fail_task_terminally.run_id, _fail_task_terminally.step_slug,
    _fail_task_terminally.error_message);
  return v_task;
end;
$$;

create or replace function pgflow.fail_task(run_id uuid, step_slug text, task_index int, error_message text)
returns setof pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
  v_max_attempts int;
  v_base_delay int;
  v_delay int;
begin
  v_task := pgflow._lock_task('fail_task', fail_task.run_id, fail_task.step_slug, fail_task.task_index);
  if v_task.status <> 'started' then
    return query select v_task.*;
    return;
  end if;

  select coalesce(s.opt_max_attempts, f.opt_max_attempts), coalesce(s.opt_base_delay, f.opt_base_delay)
    into v_max_attempts, v_base_delay
  from pgflow.steps s join pgflow.flows f on f.flow_slug = s.flow_slug
  where s.flow_slug = v_task.flow_slug and s.step_slug = fail_task.step_slug;

  if v_task.attempts_count < v_max_attempts then
    v_delay := pgflow.calculate_retry_delay(v_base_delay, v_task.attempts_count);
    update pgflow.step_tasks
       set status = 'queued', queued_at = pgflow.now(), error_message = fail_task.error_message
     where run_id = fail_task.run_id and step_slug = fail_task.step_slug and task_index = fail_task.task_index
    returning * into v_task;
    -- The message normally still exists (hidden); if it was removed, send a new one.
    perform 1 from pgmq.set_vt(v_task.flow_slug, v_task.message_id, v_delay);
    if not found then
      update pgflow.step_tasks
         set message_id = (
               select m.msg_id from pgflow._queue_send(v_task.flow_slug,
                 array[pgflow._task_message(v_task.flow_slug, v_task.run_id, v_task.step_slug, v_task.task_index)],
                 v_delay) as m(msg_id))
       where run_id = fail_task.run_id and step_slug = fail_task.step_slug and task_index = fail_task.task_index
      returning * into v_task;
    end if;
    return query select v_task.*;
    return;
  end if;

  -- Out of attempts: the step's when_exhausted decides (sql/engine/step_conditions.sql).
  -- In FROM: "(f(...)).*" would call it once per column of the row.
  return query select * from pgflow._exhaust_task(fail_task.run_id, fail_task.step_slug,
    fail_task.task_index, fail_task.error_message);
end;
$$;

-- fail_task for one attempt (1 = the first): a report retried after a lost
-- connection may arrive twice, and the first may already have queued the task
-- again and a worker started the next attempt, which the second must not fail.
-- It changes nothing unless that attempt is the one running. (An edgeflow
-- extension, what its worker calls.)
create or replace function pgflow.fail_task_attempt(run_id uuid, step_slug text, task_index int,
                                                    attempt int, error_message text)
returns setof pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
begin
  if fail_task_attempt.attempt is null or fail_task_attempt.attempt < 1 then
    perform pgflow._raise_invalid(format('fail_task_attempt: attempt must be >= 1, got %s',
      coalesce(fail_task_attempt.attempt::text, 'NULL')));
  end if;
  v_task := pgflow._lock_task('fail_task_attempt', fail_task_attempt.run_id, fail_task_attempt.step_slug,
    fail_task_attempt.task_index);
  if v_task.status <> 'started' or v_task.attempts_count <> fail_task_attempt.attempt then
    return query select v_task.*;
    return;
  end if;
  return query select * from pgflow.fail_task(fail_task_attempt.run_id, fail_task_attempt.step_slug,
    fail_task_attempt.task_index, fail_task_attempt.error_message);
end;
$$;

-- ==== sql/engine/step_conditions.sql ====
-- Step conditions and skips (pgflow 0.14's semantics). A step with
-- required_input_pattern runs only when its input contains it (jsonb @>), one
-- with forbidden_input_pattern only when its input does not; the input tested
-- is the run's input for a root step and {<dep>: <output>} of its completed
-- dependencies for a dependent step. When the condition is unmet, when_unmet
-- decides: 'fail' the run, 'skip' the step, or 'skip-cascade' (the step and
-- every step after it). when_exhausted decides the same when a task runs out
-- of attempts. A skipped dependency is an absent key in its dependents' input,
-- and a map over a skipped step maps over an empty array.

-- Checks add_step's condition arguments; raises naming what is wrong.
create or replace function pgflow._check_step_condition(
  what text, required_input_pattern jsonb, forbidden_input_pattern jsonb,
  when_unmet text, when_exhausted text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if required_input_pattern is not null and jsonb_typeof(required_input_pattern) <> 'object' then
    perform pgflow._raise_invalid(format(
      '%s: required_input_pattern must be a JSON object (matched with @>), got %s',
      what, jsonb_typeof(required_input_pattern)));
  end if;
  if forbidden_input_pattern is not null and jsonb_typeof(forbidden_input_pattern) <> 'object' then
    perform pgflow._raise_invalid(format(
      '%s: forbidden_input_pattern must be a JSON object (matched with @>), got %s',
      what, jsonb_typeof(forbidden_input_pattern)));
  end if;
  if when_unmet not in ('fail', 'skip', 'skip-cascade') then
    perform pgflow._raise_invalid(format(
      '%s: when_unmet must be ''fail'', ''skip'' or ''skip-cascade'', got %L', what, when_unmet));
  end if;
  if when_exhausted not in ('fail', 'skip', 'skip-cascade') then
    perform pgflow._raise_invalid(format(
      '%s: when_exhausted must be ''fail'', ''skip'' or ''skip-cascade'', got %L', what, when_exhausted));
  end if;
end;
$$;

-- The input a step's condition is tested against: the run's input for a root
-- step, {<dep>: <output>} of its completed (not skipped) dependencies otherwise.
create or replace function pgflow._condition_input(run_id uuid, flow_slug text, step_slug text, deps_count int)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_input jsonb;
begin
  if _condition_input.deps_count = 0 then
    select r.input into v_input from pgflow.runs r where r.run_id = _condition_input.run_id;
    return v_input;
  end if;
  select coalesce(jsonb_object_agg(d.dep_slug, pgflow._step_output(_condition_input.run_id, d.dep_slug, ds.step_type)),
                  '{}'::jsonb)
    into v_input
  from pgflow.deps d
  join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
  join pgflow.step_states dss on dss.run_id = _condition_input.run_id and dss.step_slug = d.dep_slug
  where d.flow_slug = _condition_input.flow_slug and d.step_slug = _condition_input.step_slug
    and dss.status = 'completed';
  return v_input;
end;
$$;

-- Marks one step skipped (if it is still open), cancels its open tasks and
-- archives their messages, and counts it off the run. Returns whether it skipped it.
create or replace function pgflow._mark_step_skipped(run_id uuid, step_slug text, reason text, error_message text)
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_state pgflow.step_states;
begin
  update pgflow.step_states
     set status = 'skipped', skip_reason = _mark_step_skipped.reason, skipped_at = pgflow.now(),
         remaining_tasks = null,
         error_message = coalesce(_mark_step_skipped.error_message, error_message)
   where run_id = _mark_step_skipped.run_id and step_slug = _mark_step_skipped.step_slug
     and status in ('created', 'started')
  returning * into v_state;
  if v_state.run_id is null then
    return false;
  end if;

  perform pgflow._cancel_open_tasks(v_state.run_id, v_state.flow_slug, v_state.step_slug,
    format('cancelled: step %s was skipped (%s)', v_state.step_slug, v_state.skip_reason));

  update pgflow.runs set remaining_steps = remaining_steps - 1 where run_id = v_state.run_id;

  perform pgflow._emit_step(v_state.run_id, v_state.step_slug, 'skipped',
    jsonb_build_object('flow_slug', v_state.flow_slug, 'skip_reason', v_state.skip_reason,
                       'skipped_at', v_state.skipped_at)
    || case when _mark_step_skipped.error_message is null then '{}'::jsonb
            else jsonb_build_object('error_message', _mark_step_skipped.error_message) end);
  return true;
end;
$$;

-- Skips a step as when_unmet / when_exhausted says: 'skip' skips it alone (its
-- dependents wait for one dependency less; a map over it maps over []),
-- 'skip-cascade' skips it and every step that depends on it, directly or not
-- (reason dependency_skipped), in topological order.
create or replace function pgflow._skip_step(run_id uuid, step_slug text, mode text, reason text,
                                             error_message text default null)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_flow text;
  v_slug text;
begin
  select r.flow_slug into v_flow from pgflow.runs r where r.run_id = _skip_step.run_id;
  if not pgflow._mark_step_skipped(_skip_step.run_id, _skip_step.step_slug, _skip_step.reason,
                                   _skip_step.error_message) then
    return;
  end if;

  if _skip_step.mode = 'skip-cascade' then
    for v_slug in
      with recursive downstream(step_slug) as (
        select d.step_slug from pgflow.deps d
        where d.flow_slug = v_flow and d.dep_slug = _skip_step.step_slug
        union
        select d.step_slug from pgflow.deps d
        join downstream ds on d.dep_slug = ds.step_slug
        where d.flow_slug = v_flow
      )
      select s.step_slug from pgflow.steps s
      where s.flow_slug = v_flow and s.step_slug in (select ds.step_slug from downstream ds)
      order by s.step_index
    loop
      perform pgflow._mark_step_skipped(_skip_step.run_id, v_slug, 'dependency_skipped', null);
    end loop;
    return;
  end if;

  -- A map depends on exactly one step: the skipped one gives it an empty array.
  update pgflow.step_states ss
     set remaining_deps = ss.remaining_deps - 1,
         initial_tasks = case when s.step_type = 'map' then 0 else ss.initial_tasks end
    from pgflow.deps d
    join pgflow.steps s on s.flow_slug = d.flow_slug and s.step_slug = d.step_slug
   where d.flow_slug = v_flow and d.dep_slug = _skip_step.step_slug
     and ss.run_id = _skip_step.run_id and ss.step_slug = d.step_slug;
end;
$$;

-- Tests the conditions of the run's steps that are ready to start, in step
-- order, until none is unmet: each unmet one is failed (the run fails, and
-- this returns false), skipped, or skipped with its dependents, as its
-- when_unmet says. A flow without conditions costs one index lookup.
create or replace function pgflow._resolve_step_conditions(run_id uuid)
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_step record;
begin
  loop
    select s.step_slug, s.when_unmet into v_step
    from pgflow.step_states ss
    join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
    where ss.run_id = _resolve_step_conditions.run_id
      and ss.status = 'created' and ss.remaining_deps = 0
      and (s.required_input_pattern is not null or s.forbidden_input_pattern is not null)
      and not pgflow._condition_met(s.required_input_pattern, s.forbidden_input_pattern,
            pgflow._condition_input(ss.run_id, s.flow_slug, s.step_slug, s.deps_count))
    order by s.step_index
    limit 1;
    if not found then
      return true;
    end if;
    if v_step.when_unmet = 'fail' then
      perform pgflow._fail_run(_resolve_step_conditions.run_id, v_step.step_slug, 'Condition not met');
      return false;
    end if;
    perform pgflow._skip_step(_resolve_step_conditions.run_id, v_step.step_slug, v_step.when_unmet,
                              'condition_unmet');
  end loop;
end;
$$;

-- The condition itself: the input contains the required pattern (if any) and
-- does not contain the forbidden one (if any).
create or replace function pgflow._condition_met(required_input_pattern jsonb, forbidden_input_pattern jsonb,
                                                 input jsonb)
returns boolean
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  return (required_input_pattern is null or coalesce(input @> required_input_pattern, false))
     and (forbidden_input_pattern is null or not coalesce(input @> forbidden_input_pattern, false));
end;
$$;

-- Settles the run's ready steps before any is started: resolves conditions and
-- completes taskless maps (over [] or over a skipped step) until neither
-- changes anything. False when a condition failed the run.
create or replace function pgflow._settle_ready_steps(run_id uuid)
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  loop
    if not pgflow._resolve_step_conditions(_settle_ready_steps.run_id) then
      return false;
    end if;
    exit when pgflow.cascade_complete_taskless_steps(_settle_ready_steps.run_id) = 0;
  end loop;
  return true;
end;
$$;

-- A task out of attempts: with when_exhausted 'fail' the run fails (as always
-- before conditions); with 'skip' or 'skip-cascade' the task fails, its step is
-- skipped (handler_failed) and the run goes on without it.
create or replace function pgflow._exhaust_task(run_id uuid, step_slug text, task_index int, error_message text)
returns pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
  v_mode text;
begin
  -- The run by its key alone (see complete_tasks).
  select s.when_exhausted into v_mode
  from (select r.flow_slug from pgflow.runs r where r.run_id = _exhaust_task.run_id offset 0) r
  join pgflow.steps s on s.flow_slug = r.flow_slug
  where s.step_slug = _exhaust_task.step_slug;
  if v_mode is distinct from 'skip' and v_mode is distinct from 'skip-cascade' then
    return pgflow._fail_task_terminally(_exhaust_task.run_id, _exhaust_task.step_slug,
      _exhaust_task.task_index, _exhaust_task.error_message);
  end if;

  update pgflow.step_tasks
     set status = 'failed', failed_at = pgflow.now(), error_message = _exhaust_task.error_message
   where run_id = _exhaust_task.run_id and step_slug = _exhaust_task.step_slug
     and task_index = _exhaust_task.task_index
  returning * into v_task;
  perform pgflow._queue_archive(v_task.flow_slug, array[v_task.message_id]);

  perform pgflow._skip_step(_exhaust_task.run_id, _exhaust_task.step_slug, v_mode, 'handler_failed',
                            _exhaust_task.error_message);
  perform pgflow.start_ready_steps(_exhaust_task.run_id);
  perform pgflow.maybe_complete_run(_exhaust_task.run_id);
  return v_task;
end;
$$;

-- ==== sql/engine/stall_recovery.sql ====
-- Fails every task still 'started' past its own step's timeout plus the
-- 2 s margin start_tasks gives its message (its worker vanished): each such attempt
-- is retried with backoff, or fails the run when attempts are used up. Limited
-- to a flow and to some of its messages when given; returns the messages of the tasks
-- it failed. Used by start_tasks (messages that came back) and requeue_stalled_tasks.
--
-- The deadline is compared with pgflow.clock_now(), the engine's reading of
-- clock_timestamp(), the clock pgmq.read uses, not pgflow.now() (the
-- transaction's start): start_tasks set the message's vt to clock_timestamp()
-- + timeout + margin after started_at (its pgflow.now()), so a message read
-- when its vt had passed always has started_at + timeout + margin <= the read's
-- clock <= this clock, even when the reading transaction began before the
-- deadline (complete_tasks_and_claim, a long read_with_poll). Both sides carry
-- the clock's offset (sql/engine/clock.sql), so moving the clock keeps this true.
create or replace function pgflow._fail_stalled_tasks(p_flow_slug text, p_msg_ids bigint[])
returns bigint[]
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_task record;
  v_failed bigint[] := '{}';
begin
  for v_task in
    select t.run_id, t.step_slug, t.task_index, t.message_id, t.last_worker_id,
           coalesce(s.opt_timeout, f.opt_timeout) as timeout
    -- Two branches, each with its own index, rather than one filter with
    -- "p_msg_ids is null or ...": that form scans every started task (and,
    -- until a vacuum, the index entries of every task started before) on each
    -- claim, which made a wide map's cost grow with the square of its width.
    from (
      select t.* from pgflow.step_tasks t
      -- Both conditions of step_tasks_started_idx, so the sweep can use it.
      where p_msg_ids is null and t.status = 'started' and t.started_at is not null
        and (p_flow_slug is null or t.flow_slug = p_flow_slug)
      union all
      -- Message ids are per queue, so this branch needs the flow.
      select t.* from pgflow.step_tasks t
      where t.flow_slug = p_flow_slug and t.message_id = any(p_msg_ids) and t.status = 'started'
    ) t
    join pgflow.steps s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
    join pgflow.flows f on f.flow_slug = t.flow_slug
    where t.started_at + make_interval(secs => coalesce(s.opt_timeout, f.opt_timeout) + 2) <= pgflow.clock_now()
    order by t.started_at
  loop
    perform pgflow.fail_task(v_task.run_id, v_task.step_slug, v_task.task_index,
      format('timed out: worker %s did not report within the step timeout of %s s',
             v_task.last_worker_id, v_task.timeout));
    v_failed := v_failed || v_task.message_id;
  end loop;
  return v_failed;
end;
$$;

-- Recovery: a task still 'started' past its step's own timeout (plus the
-- 2 s margin start_tasks gives its message) has lost its worker. Each such
-- attempt counts as failed: retried with backoff, or failing the run when
-- attempts are exhausted. Workers call this periodically; pg_cron can too.
create or replace function pgflow.requeue_stalled_tasks(flow_slug text default null)
returns int
language sql
set search_path = pg_catalog, pg_temp
as $$
  select cardinality(pgflow._fail_stalled_tasks(requeue_stalled_tasks.flow_slug, null));
$$;

-- ==== sql/engine/completion.sql ====
-- Completing tasks: one (complete_task), many at once (complete_tasks), or
-- one and claiming the next ones in the same transaction (complete_task_and_claim).

-- Loads and locks a task (and its run, which serialises all state changes of
-- a run) for complete_task / fail_task; one query on the common path, and a
-- clear error naming what is missing otherwise.
create or replace function pgflow._lock_task(caller text, run_id uuid, step_slug text, task_index int)
returns pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text;
  v_flow text;
  v_task pgflow.step_tasks;
begin
  select t.* into v_task
  from pgflow.runs r
  join pgflow.step_tasks t on t.run_id = r.run_id
  where r.run_id = _lock_task.run_id and t.step_slug = _lock_task.step_slug
    and t.task_index = _lock_task.task_index
  for update of r, t;
  if found then
    return v_task;
  end if;

  -- Only failed lookups pay for building the message.
  v_what := format('%s(%s, %L, %s)', caller, _lock_task.run_id, _lock_task.step_slug, _lock_task.task_index);
  select flow_slug into v_flow from pgflow.runs where run_id = _lock_task.run_id;
  if not found then
    perform pgflow._no_such(format('%s: run %s does not exist', v_what, coalesce(_lock_task.run_id::text, 'NULL')));
  end if;
  perform 1 from pgflow.steps where flow_slug = v_flow and step_slug = _lock_task.step_slug;
  if not found then
    perform pgflow._no_such(format('%s: flow %L has no step %s', v_what, v_flow,
      coalesce(quote_literal(_lock_task.step_slug), 'NULL')));
  end if;
  perform pgflow._no_such(format('%s: step %L of run %s has no task %s (yet)', v_what,
    _lock_task.step_slug, _lock_task.run_id, coalesce(_lock_task.task_index::text, 'NULL')));
end;
$$;

create or replace function pgflow.complete_task(run_id uuid, step_slug text, task_index int, output jsonb)
returns setof pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_found record;
  v_try int;
  v_task pgflow.step_tasks;
  v_state pgflow.step_states;
  v_now timestamptz;
  -- SQL NULL is stored as SQL NULL (pgflow does the same); 'null'::jsonb as JSON null.
  v_output jsonb := complete_task.output;
  v_step_output jsonb;
  v_map_dependent text;
  v_error text;
  v_run record;
  v_events text[];
  v_payloads jsonb[];
begin
  -- The task and its run, both locked (the run row serialises all state
  -- changes of a run), with what the completion needs of the step: one query.
  -- The step is read in a fenced lateral (OFFSET 0): joined, a plan cached
  -- while the tables were small could reach the task through the step's flow
  -- and read every task of the flow (ARCHITECTURE.md, "Key lookups stay key
  -- lookups").
  for v_try in 1 .. 2 loop
    select t as task, r.status as run_status, st.step_type, st.has_dependents
      into v_found
    from pgflow.runs r
    join pgflow.step_tasks t on t.run_id = r.run_id
    cross join lateral (
      select s.step_type,
             exists (select 1 from pgflow.deps d
                     where d.flow_slug = s.flow_slug and d.dep_slug = s.step_slug) as has_dependents
      from pgflow.steps s
      where s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
      offset 0) st
    where r.run_id = complete_task.run_id and t.step_slug = complete_task.step_slug
      and t.task_index = complete_task.task_index
    for update of r, t;
    exit when found;
    -- Raises the error that names what is missing. It returns only when the
    -- task was committed after the query above began: then the query, run
    -- again, sees it.
    perform pgflow._lock_task('complete_task', complete_task.run_id, complete_task.step_slug,
      complete_task.task_index);
  end loop;
  if v_found.task is null then
    perform pgflow._no_such(format('complete_task(%s, %L, %s): the task changed while it was read; report it again',
      complete_task.run_id, complete_task.step_slug, complete_task.task_index));
  end if;
  v_task := v_found.task;
  -- Late or duplicate reports (task already completed/failed/requeued) change nothing.
  if v_task.status <> 'started' then
    return query select v_task.*;
    return;
  end if;

  -- A single step feeding a map must produce an array; otherwise the run fails,
  -- keeping the offending output on the task for debugging.
  if v_found.has_dependents and v_found.step_type = 'single'
     and coalesce(jsonb_typeof(v_output), 'SQL NULL') <> 'array' then
    select m.step_slug into v_map_dependent
    from pgflow.deps d
    join pgflow.steps m on m.flow_slug = d.flow_slug and m.step_slug = d.step_slug
    where d.flow_slug = v_task.flow_slug and d.dep_slug = complete_task.step_slug
      and m.step_type = 'map'
    order by m.step_index
    limit 1;
    if v_map_dependent is not null then
      v_error := format('[TYPE_VIOLATION] step %L must return an array because map step %L maps over it; got %s',
                        complete_task.step_slug, v_map_dependent, coalesce(jsonb_typeof(v_output), 'SQL NULL'));
      -- In FROM: "(f(...)).*" would call it once per column of the row.
      return query select * from pgflow._fail_task_terminally(complete_task.run_id,
        complete_task.step_slug, complete_task.task_index, v_error, v_output);
      return;
    end if;
  end if;

  v_now := pgflow.now();
  -- error_message keeps the last failed attempt's message, as in pgflow. A map
  -- task's element has served its purpose (see step_tasks.element).
  update pgflow.step_tasks
     set status = 'completed', completed_at = v_now, output = v_output, element = null
   where run_id = complete_task.run_id and step_slug = complete_task.step_slug
     and task_index = complete_task.task_index
  returning * into v_task;
  perform pgflow._queue_archive(v_task.flow_slug, array[v_task.message_id]);

  if v_found.run_status <> 'started' then
    perform pgflow._count_down_step(complete_task.run_id, complete_task.step_slug,
      v_found.step_type, 1, v_output);
    return query select v_task.*;
    return;
  end if;

  -- A started run: _count_down_step's work in as few statements as the step
  -- allows.
  v_state := pgflow._count_down_state(complete_task.run_id, complete_task.step_slug, 1, v_now);
  if v_state.status <> 'completed' then
    return query select v_task.*;
    return;
  end if;
  v_step_output := case when v_found.step_type = 'map'
    then pgflow._step_output(complete_task.run_id, complete_task.step_slug, 'map') else v_output end;

  if v_found.has_dependents then
    -- As _count_down_step: the event, the dependents' inputs and the run's
    -- count, then the dependents that became ready (and, through the
    -- empty-map cascade, maybe the end of the run).
    perform pgflow._step_completed(v_state, v_found.step_type, v_step_output);
    perform pgflow.start_ready_steps(complete_task.run_id);
    perform pgflow.maybe_complete_run(complete_task.run_id);
    return query select v_task.*;
    return;
  end if;

  -- A leaf step can only end the run: one update counts it off and completes
  -- a run left with no step (as _count_down_runs), and its events go out with
  -- one trust check of realtime.send.
  update pgflow.runs r
     set remaining_steps = r.remaining_steps - 1,
         status = case when r.remaining_steps = 1 then 'completed' else r.status end,
         completed_at = case when r.remaining_steps = 1 then v_now else r.completed_at end,
         output = case when r.remaining_steps = 1
                       then pgflow._run_output(r.run_id, r.flow_slug) else r.output end
   where r.run_id = complete_task.run_id
  returning r.flow_slug, r.status, r.output, r.completed_at into v_run;
  v_events := array['step:' || complete_task.step_slug || ':completed'];
  v_payloads := array[jsonb_build_object('output', v_step_output,
    'started_at', v_state.started_at, 'completed_at', v_state.completed_at)];
  if v_run.status = 'completed' then
    v_events := v_events || 'run:completed'::text;
    v_payloads := v_payloads || jsonb_build_object('flow_slug', v_run.flow_slug,
      'output', v_run.output, 'completed_at', v_run.completed_at);
  end if;
  perform pgflow._emit_each(array_fill(complete_task.run_id, array[cardinality(v_events)]),
    v_events, v_payloads);

  return query select v_task.*;
end;
$$;

-- one transaction. A worker with free slots reports a completion and, in the
-- same round trip, reads and starts up to qty visible tasks of the flow,
-- including those the completion just made ready. This saves one round trip
-- and one wake-up per DAG level. (An edgeflow extension; pgflow has no such call.)
--
-- Returns {"status", "error_message"} of the reported task and "claimed": the
-- started tasks, each with its message's read_ct, enqueued_at, vt, message, headers,
-- and "attempt": which attempt of the task this is (1 = the first).
create or replace function pgflow.complete_task_and_claim(
  run_id uuid,
  step_slug text,
  task_index int,
  output jsonb,
  worker_id uuid,
  vt int,
  qty int
)
returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
  v_claimed jsonb := '[]'::jsonb;
begin
  perform pgflow._check_claim_size('complete_task_and_claim', complete_task_and_claim.vt,
    complete_task_and_claim.qty);
  -- The claim below takes what the completion makes ready: no wake-up for it
  -- unless the claim is full (wakeups.sql).
  if complete_task_and_claim.qty > 0 then
    perform pgflow._hold_wakeups();
  end if;
  select * into v_task
  from pgflow.complete_task(complete_task_and_claim.run_id, complete_task_and_claim.step_slug,
                            complete_task_and_claim.task_index, complete_task_and_claim.output);

  if complete_task_and_claim.qty > 0 then
    -- Messages sent by the completion are visible to this transaction only, so
    -- this worker claims them before any other can.
    select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb) into v_claimed
    from pgflow.read_and_start_tasks(v_task.flow_slug, complete_task_and_claim.vt,
           complete_task_and_claim.qty, complete_task_and_claim.worker_id) c;
    perform pgflow._release_wakeups(v_task.flow_slug);
  end if;

  return jsonb_build_object('status', v_task.status, 'error_message', v_task.error_message,
                            'claimed', v_claimed);
end;
$$;

-- Many reports in one call. Started tasks in started runs (most of a busy
-- worker's reports) are completed in one pass: each task updated by its key,
-- one archive per queue, one count-down for all (run, step) groups. Other
-- reports (late or duplicate ones, single steps feeding a map) go through
-- complete_task one by one. All runs of the batch are locked first, in run id order, so concurrent
-- batches cannot deadlock. (An edgeflow extension.)
--
-- Returns one row per report, in the order given: the task's status and
-- error_message afterwards (late or duplicate reports change nothing).
create or replace function pgflow.complete_tasks(
  run_ids uuid[],
  step_slugs text[],
  task_indexes int[],
  outputs jsonb[]
)
returns table (ord int, status text, error_message text)
language plpgsql
set search_path = pg_catalog, pg_temp
-- A hot entry point: see ARCHITECTURE.md, "Key lookups stay key lookups" and
-- "Planned once per connection".
set enable_seqscan = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
  v_count int := coalesce(cardinality(run_ids), 0);
  v_done_ords int[];
  v_flows text[];
  v_runs uuid[];
  v_steps text[];
  v_types text[];
  v_msgs bigint[];
  v_outputs jsonb[];
  v_errors text[];
  -- Once: in a many-row statement a function call runs for every row.
  v_now timestamptz := pgflow.now();
  v_group record;
  v_group_runs uuid[];
  v_group_steps text[];
  v_group_types text[];
  v_group_ns int[];
  v_group_outputs jsonb[];
  v_report record;
begin
  if v_count <> coalesce(cardinality(step_slugs), 0) or v_count <> coalesce(cardinality(task_indexes), 0)
     or v_count <> coalesce(cardinality(outputs), 0) then
    perform pgflow._raise_invalid(format(
      'complete_tasks: run_ids, step_slugs, task_indexes and outputs must have the same length, got %s, %s, %s, %s',
      v_count, coalesce(cardinality(step_slugs), 0), coalesce(cardinality(task_indexes), 0),
      coalesce(cardinality(outputs), 0)));
  end if;
  if v_count = 0 then
    return;
  end if;
  -- One report (an idle worker's, a DAG level of one step): complete_task runs
  -- fewer statements than the set-based path below, which pays off from two.
  if v_count = 1 then
    return query
      select 1, t.status, t.error_message
      from pgflow.complete_task(complete_tasks.run_ids[1], complete_tasks.step_slugs[1],
                                complete_tasks.task_indexes[1], complete_tasks.outputs[1]) t;
    return;
  end if;

  perform 1 from pgflow.runs r
  where r.run_id = any(complete_tasks.run_ids)
  order by r.run_id
  for update;

  -- Set-based path: started tasks in started runs, except those of single steps
  -- feeding a map (their output must be an array: checked one by one below).
  -- Each run and step is looked up by key in a fenced subquery (OFFSET 0) and
  -- its status tested outside it, and each task is updated by its primary key:
  -- a plan cached while the tables were small takes a status index for nearly
  -- empty and, given "status = 'started'", would read every started run or task
  -- on each batch. (The runs are locked above, so their status cannot change.)
  with reports as (
    select distinct on (u.run_id, u.step_slug, u.task_index)
           u.run_id, u.step_slug, u.task_index, u.output, u.ord, k.flow_slug, k.step_type
    from unnest(complete_tasks.run_ids, complete_tasks.step_slugs,
                complete_tasks.task_indexes, complete_tasks.outputs)
           with ordinality as u(run_id, step_slug, task_index, output, ord)
    cross join lateral (
      select r.flow_slug, r.status as run_status, s.step_type,
             exists (
               select 1 from pgflow.deps d
               join pgflow.steps m on m.flow_slug = d.flow_slug and m.step_slug = d.step_slug
               where d.flow_slug = s.flow_slug and d.dep_slug = s.step_slug and m.step_type = 'map')
               as feeds_map
      -- The run by its key alone: joined to its steps, a plan could find the
      -- run among all of its flow's (runs_flow_started_idx).
      from (select r.flow_slug, r.status from pgflow.runs r where r.run_id = u.run_id offset 0) r
      join pgflow.steps s on s.flow_slug = r.flow_slug and s.step_slug = u.step_slug
      offset 0) k
    where k.run_status = 'started' and (k.step_type = 'map' or not k.feeds_map)
    -- A task reported twice in one batch: the first report counts, as in two calls.
    order by u.run_id, u.step_slug, u.task_index, u.ord
  ),
  done as (
    -- Each task by its primary key (one lookup per report, fenced by the CTE).
    update pgflow.step_tasks t
       set status = 'completed', completed_at = v_now, output = r.output, element = null
      from reports r
     where t.run_id = r.run_id and t.step_slug = r.step_slug
       and t.task_index = r.task_index and t.status = 'started'
       -- The keys again, as conditions of the table alone (see _count_down_steps).
       and t.run_id = any(complete_tasks.run_ids) and t.step_slug = any(complete_tasks.step_slugs)
       and t.task_index = any(complete_tasks.task_indexes)
    returning r.ord, r.flow_slug, r.run_id, r.step_slug, r.step_type, t.message_id, t.output,
              t.error_message
  )
  select array_agg(d.ord::int order by d.ord), array_agg(d.flow_slug order by d.ord),
         array_agg(d.run_id order by d.ord), array_agg(d.step_slug order by d.ord),
         array_agg(d.step_type order by d.ord), array_agg(d.message_id order by d.ord),
         array_agg(d.output order by d.ord), array_agg(d.error_message order by d.ord)
    into v_done_ords, v_flows, v_runs, v_steps, v_types, v_msgs, v_outputs, v_errors
  from done d;

  if v_done_ords is not null then
    -- One archive per queue.
    for v_group in
      select a.flow_slug, array_agg(a.message_id) filter (where a.message_id is not null) as msgs
      from unnest(v_flows, v_msgs) as a(flow_slug, message_id)
      group by a.flow_slug
    loop
      if v_group.msgs is not null then
        perform pgflow._queue_archive(v_group.flow_slug, v_group.msgs);
      end if;
    end loop;
    -- The count-down of every (run, step), in lock order, in one call.
    select array_agg(g.run_id order by g.run_id, g.step_slug),
           array_agg(g.step_slug order by g.run_id, g.step_slug),
           array_agg(g.step_type order by g.run_id, g.step_slug),
           array_agg(g.n order by g.run_id, g.step_slug),
           array_agg(g.output order by g.run_id, g.step_slug)
      into v_group_runs, v_group_steps, v_group_types, v_group_ns, v_group_outputs
    from (
      select c.run_id, c.step_slug, c.step_type, count(*)::int as n,
             case when c.step_type = 'single' then (array_agg(c.output))[1] end as output
      from unnest(v_runs, v_steps, v_types, v_outputs) as c(run_id, step_slug, step_type, output)
      group by c.run_id, c.step_slug, c.step_type
    ) g;
    perform pgflow._count_down_steps(v_group_runs, v_group_steps, v_group_types, v_group_ns,
      v_group_outputs);
  end if;

  -- Everything else, one by one, in (run, step, task) order.
  for v_report in
    select b.run_id, b.step_slug, b.task_index, b.output
    from unnest(complete_tasks.run_ids, complete_tasks.step_slugs,
                complete_tasks.task_indexes, complete_tasks.outputs)
      with ordinality as b(run_id, step_slug, task_index, output, ord)
    where not (b.ord = any(coalesce(v_done_ords, '{}')))
    order by b.run_id, b.step_slug, b.task_index
  loop
    perform pgflow.complete_task(v_report.run_id, v_report.step_slug, v_report.task_index, v_report.output);
  end loop;

  -- A task completed set-based stays completed; the others are looked up one by
  -- one (a lateral lookup, fenced by OFFSET 0: flattened into a join, its plan
  -- could read the whole table).
  return query
    select d.ord, 'completed'::text, d.error_message
    from unnest(v_done_ords, v_errors) as d(ord, error_message)
    union all
    select b.ord::int, t.status, t.error_message
    from unnest(complete_tasks.run_ids, complete_tasks.step_slugs, complete_tasks.task_indexes)
      with ordinality as b(run_id, step_slug, task_index, ord)
    left join lateral (
      select t.status, t.error_message from pgflow.step_tasks t
      where t.run_id = b.run_id and t.step_slug = b.step_slug and t.task_index = b.task_index
      offset 0) t on true
    where not (b.ord = any(coalesce(v_done_ords, '{}')))
    order by 1;
end;
$$;

-- A batch of reports and a claim in one transaction: complete_tasks, then
-- read_and_start_tasks for up to qty tasks of the flow (those the batch made
-- ready included). A busy worker reports the tasks it finished and gets the
-- next ones in one round trip. (An edgeflow extension.)
--
-- Returns {"results": [{"status", "error_message"}, ...] in the order given,
-- "claimed": [...]} with claimed as complete_task_and_claim returns it.
create or replace function pgflow.complete_tasks_and_claim(
  flow_slug text,
  run_ids uuid[],
  step_slugs text[],
  task_indexes int[],
  outputs jsonb[],
  worker_id uuid,
  vt int,
  qty int
)
returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_results jsonb;
  v_claimed jsonb := '[]'::jsonb;
begin
  -- Checked before anything changes, under this call's name (with qty 0 nothing
  -- else would look at them).
  perform pgflow._check_claim_size('complete_tasks_and_claim', complete_tasks_and_claim.vt,
    complete_tasks_and_claim.qty);
  perform pgflow._require_flow('complete_tasks_and_claim', complete_tasks_and_claim.flow_slug);
  -- The claim below takes what the reports make ready: no wake-up for it
  -- unless the claim is full (wakeups.sql).
  if complete_tasks_and_claim.qty > 0 then
    perform pgflow._hold_wakeups();
  end if;

  select coalesce(jsonb_agg(jsonb_build_object('status', c.status, 'error_message', c.error_message)
                            order by c.ord), '[]'::jsonb)
    into v_results
  from pgflow.complete_tasks(complete_tasks_and_claim.run_ids, complete_tasks_and_claim.step_slugs,
                             complete_tasks_and_claim.task_indexes, complete_tasks_and_claim.outputs) c;

  if complete_tasks_and_claim.qty > 0 then
    select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb) into v_claimed
    from pgflow.read_and_start_tasks(complete_tasks_and_claim.flow_slug, complete_tasks_and_claim.vt,
           complete_tasks_and_claim.qty, complete_tasks_and_claim.worker_id) c;
    perform pgflow._release_wakeups(complete_tasks_and_claim.flow_slug);
  end if;
  return jsonb_build_object('results', v_results, 'claimed', v_claimed);
end;
$$;

-- ==== sql/engine/run_operations.sql ====
-- Operating runs: cancel_run stops one, resume_run continues a failed or
-- cancelled one in place, restart_run starts a new run of the same flow and
-- input. Clients call them (SECURITY DEFINER, granted like start_flow; see
-- README, "Operating runs"); workers ask cancelled_runs which of their
-- in-flight runs to abort.
--
-- Each locks the run row first, as every state change of a run does (see
-- run_progress.sql): a completion and a cancellation of one run serialise, and
-- whichever commits second sees the other's result.

-- Loads and locks a run; a clear error when there is none.
create or replace function pgflow._lock_run(caller text, run_id uuid)
returns pgflow.runs
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run pgflow.runs;
begin
  select * into v_run from pgflow.runs where run_id = _lock_run.run_id for update;
  if not found then
    perform pgflow._no_such(format('%s(%s): run %s does not exist', caller,
      coalesce(_lock_run.run_id::text, 'NULL'), coalesce(_lock_run.run_id::text, 'NULL')));
  end if;
  return v_run;
end;
$$;

-- Cancels a started run: its open tasks end 'cancelled' and their messages
-- are archived (no worker starts them), its started steps end 'cancelled', and
-- the run ends 'cancelled'. Workers running its tasks are told on channel
-- pgflow:cancel:<flow> (payload: the run id) and at their next
-- heartbeat, and abort the handlers' signals; a report that arrives later
-- changes nothing. Cancelling a cancelled run returns it unchanged; a
-- completed or failed run cannot be cancelled.
create or replace function pgflow.cancel_run(run_id uuid, reason text default null)
returns pgflow.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('cancel_run(%s)', coalesce(cancel_run.run_id::text, 'NULL'));
  v_run pgflow.runs;
  v_state pgflow.step_states;
  v_message text;
begin
  if length(cancel_run.reason) > 1000 then
    perform pgflow._raise_invalid(format('%s: reason must be at most %s characters, got %s',
      v_what, 1000, length(cancel_run.reason)));
  end if;
  v_run := pgflow._lock_run('cancel_run', cancel_run.run_id);
  if v_run.status = 'cancelled' then
    return v_run;
  elsif v_run.status = 'completed' then
    perform pgflow._raise_state(format('%s: the run already completed at %s; there is nothing to cancel',
      v_what, v_run.completed_at));
  elsif v_run.status = 'failed' then
    perform pgflow._raise_state(format(
      '%s: the run already failed at %s; resume_run continues it, restart_run starts it again',
      v_what, v_run.failed_at));
  end if;
  v_message := 'cancelled: ' || coalesce(nullif(btrim(cancel_run.reason), ''), 'cancel_run gave no reason');

  perform pgflow._cancel_open_tasks(v_run.run_id, v_run.flow_slug, null, v_message);

  update pgflow.runs set status = 'cancelled', cancelled_at = pgflow.now()
  where run_id = v_run.run_id
  returning * into v_run;

  for v_state in
    update pgflow.step_states
       set status = 'cancelled', cancelled_at = pgflow.now(), error_message = v_message
     where run_id = v_run.run_id and status = 'started'
    returning *
  loop
    perform pgflow._emit_step(v_run.run_id, v_state.step_slug, 'cancelled',
      jsonb_build_object('error_message', v_message, 'cancelled_at', v_state.cancelled_at));
  end loop;
  perform pgflow._emit_run(v_run.run_id, 'cancelled',
    jsonb_build_object('flow_slug', v_run.flow_slug, 'reason', cancel_run.reason,
                       'cancelled_at', v_run.cancelled_at));
  perform pg_notify('pgflow:cancel:' || v_run.flow_slug, v_run.run_id::text);
  return v_run;
end;
$$;

-- Continues a failed or cancelled run in place: every failed or cancelled
-- step starts again, its unfinished tasks queued at once with fresh attempts
-- (attempts_count 0, new messages); completed tasks and steps keep their
-- outputs, and dependents start as usual. Refused for a run that is running or
-- completed, and when the flow gained steps since the run started (the run has
-- no state for them; restart_run runs the flow as it is now).
create or replace function pgflow.resume_run(run_id uuid)
returns pgflow.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('resume_run(%s)', coalesce(resume_run.run_id::text, 'NULL'));
  v_run pgflow.runs;
  v_added text[];
  v_step record;
  v_state pgflow.step_states;
  v_indexes int[];
  v_old_msgs bigint[];
  v_sent boolean := false;
begin
  v_run := pgflow._lock_run('resume_run', resume_run.run_id);
  if v_run.status = 'started' then
    perform pgflow._raise_state(format(
      '%s: the run is running; only a failed or cancelled run can be resumed', v_what));
  elsif v_run.status = 'completed' then
    perform pgflow._raise_state(format(
      '%s: the run completed at %s; there is nothing to resume (restart_run starts it again)',
      v_what, v_run.completed_at));
  end if;

  -- add_step refuses while a run of the flow is started and locks the flow row
  -- to check: sharing that lock makes the check and this resume wait for each other.
  perform 1 from pgflow.flows where flow_slug = v_run.flow_slug for share;
  -- Steps are never removed while runs reference them and an existing step's
  -- type and dependencies never change (add_step, step_states' foreign key):
  -- the only way a flow changes under a run is a step added since.
  select array_agg(s.step_slug order by s.step_index) into v_added
  from pgflow.steps s
  where s.flow_slug = v_run.flow_slug
    and not exists (select 1 from pgflow.step_states ss
                    where ss.run_id = v_run.run_id and ss.step_slug = s.step_slug);
  if v_added is not null then
    perform pgflow._raise_state(format(
      '%s: flow %L changed since the run started (steps added: %s); restart_run starts a new run of the flow as it is now',
      v_what, v_run.flow_slug, array_to_string(v_added, ', ')));
  end if;

  update pgflow.runs set status = 'started', failed_at = null, cancelled_at = null
  where run_id = v_run.run_id
  returning * into v_run;
  perform pgflow._emit(v_run.run_id, 'run:resumed',
    jsonb_build_object('status', 'started', 'flow_slug', v_run.flow_slug,
                       'remaining_steps', v_run.remaining_steps));

  for v_step in
    select ss.step_slug, s.step_type
    from pgflow.step_states ss
    join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
    where ss.run_id = v_run.run_id and ss.status in ('failed', 'cancelled')
    order by s.step_index
    for update of ss
  loop
    -- A step that failed before it had tasks (its condition with when_unmet
    -- 'fail') goes back to waiting: start_ready_steps tests the condition again.
    if not exists (select 1 from pgflow.step_tasks t
                   where t.run_id = v_run.run_id and t.step_slug = v_step.step_slug) then
      update pgflow.step_states
         set status = 'created', failed_at = null, cancelled_at = null, error_message = null
       where run_id = v_run.run_id and step_slug = v_step.step_slug;
      continue;
    end if;
    select array_agg(t.task_index order by t.task_index),
           array_agg(t.message_id) filter (where t.message_id is not null)
      into v_indexes, v_old_msgs
    from pgflow.step_tasks t
    where t.run_id = v_run.run_id and t.step_slug = v_step.step_slug and t.status <> 'completed';
    v_indexes := coalesce(v_indexes, '{}');

    -- Messages of failed and cancelled tasks were archived when they ended;
    -- archiving again is harmless and makes sure no old message comes back.
    if v_old_msgs is not null then
      perform pgflow._queue_archive(v_run.flow_slug, v_old_msgs);
    end if;
    if cardinality(v_indexes) > 0 then
      -- pgmq assigns ascending ids in array order: the n-th smallest id is the n-th task.
      update pgflow.step_tasks t
         set status = 'queued', attempts_count = 0, message_id = m.msg_id, queued_at = pgflow.now(),
             started_at = null, failed_at = null, cancelled_at = null, output = null
        from (
          select i.task_index, sent.msg_id
          from unnest(v_indexes) with ordinality as i(task_index, ord)
          join (
            select s.msg_id, row_number() over (order by s.msg_id) as ord
            from pgflow._queue_send(v_run.flow_slug,
                   array(select pgflow._task_message(v_run.flow_slug, v_run.run_id, v_step.step_slug, x)
                         from unnest(v_indexes) x order by x),
                   0) as s(msg_id)
          ) sent on sent.ord = i.ord
        ) m
       where t.run_id = v_run.run_id and t.step_slug = v_step.step_slug and t.task_index = m.task_index;
      v_sent := true;
    end if;

    update pgflow.step_states
       set status = 'started', started_at = pgflow.now(), failed_at = null, cancelled_at = null,
           error_message = null, remaining_tasks = cardinality(v_indexes)
     where run_id = v_run.run_id and step_slug = v_step.step_slug
    returning * into v_state;
    perform pgflow._emit_step(v_run.run_id, v_step.step_slug, 'started',
      jsonb_build_object('remaining_tasks', v_state.remaining_tasks,
                         'remaining_deps', v_state.remaining_deps, 'started_at', v_state.started_at));
    if v_state.remaining_tasks = 0 then
      -- Nothing left to run (every task had completed): the step completes now.
      perform pgflow._count_down_step(v_run.run_id, v_step.step_slug, v_step.step_type, 0,
        pgflow._step_output(v_run.run_id, v_step.step_slug, 'single'));
    end if;
  end loop;

  if v_sent then
    perform pgflow._announce_ready(v_run.flow_slug);
  end if;
  perform pgflow.start_ready_steps(v_run.run_id);
  perform pgflow.maybe_complete_run(v_run.run_id);
  select * into v_run from pgflow.runs where run_id = v_run.run_id;
  return v_run;
end;
$$;

-- Starts a new run of a finished run's flow with the same input (the flow as
-- it is now), linked to it by restart_of_run_id; returns the new run. A run
-- that is still running is refused: cancel_run it first.
create or replace function pgflow.restart_run(run_id uuid)
returns pgflow.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('restart_run(%s)', coalesce(restart_run.run_id::text, 'NULL'));
  v_run pgflow.runs;
  v_new pgflow.runs;
begin
  v_run := pgflow._lock_run('restart_run', restart_run.run_id);
  if v_run.status = 'started' then
    perform pgflow._raise_state(format(
      '%s: the run is still running; cancel_run it first, or wait until it ends', v_what));
  end if;

  select * into v_new from pgflow.start_flow(v_run.flow_slug, v_run.input);
  update pgflow.runs set restart_of_run_id = v_run.run_id
  where run_id = v_new.run_id
  returning * into v_new;
  perform pgflow._emit(v_run.run_id, 'run:restarted',
    jsonb_build_object('status', v_run.status, 'flow_slug', v_run.flow_slug,
                       'restarted_as', v_new.run_id));
  return v_new;
end;
$$;

-- For workers: which of these runs (those of their in-flight tasks) are
-- cancelled, so that they abort the handlers. Every worker asks at every
-- heartbeat: each run is read by key and its status tested after, so the
-- check reads only the runs asked about. With the status in the same
-- condition, a plan could read every cancelled run through the status index
-- (the run id is its last column), and cancelled runs pile up.
create or replace function pgflow.cancelled_runs(run_ids uuid[])
returns setof uuid
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set enable_seqscan = off
as $$
#variable_conflict use_column
begin
  return query
    select u.id
    from (select distinct i.id from unnest(cancelled_runs.run_ids) as i(id)) u
    cross join lateral (
      select r.status from pgflow.runs r where r.run_id = u.id offset 0) r
    where r.status = 'cancelled';
end;
$$;

-- ==== sql/engine/run_reads.sql ====
-- Reading a run: its row and every step state, for clients (SECURITY DEFINER,
-- granted like start_flow).
create or replace function pgflow.get_run_with_states(run_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_result jsonb;
begin
  select jsonb_build_object(
           'run', to_jsonb(r),
           'steps', coalesce((
             select jsonb_agg(to_jsonb(ss) order by s.step_index)
             from pgflow.step_states ss
             join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
             where ss.run_id = r.run_id), '[]'::jsonb))
    into v_result
  from pgflow.runs r
  where r.run_id = get_run_with_states.run_id;
  if v_result is null then
    perform pgflow._no_such(format('get_run_with_states: run %s does not exist',
      coalesce(get_run_with_states.run_id::text, 'NULL')));
  end if;
  return v_result;
end;
$$;

-- ==== sql/engine/workers.sql ====
-- Worker bookkeeping used by the edge worker: registration, heartbeats,
-- deprecation, stopping.

-- Marks a worker stopped (it shut down cleanly); unknown ids are an error.
create or replace function pgflow.mark_worker_stopped(worker_id uuid)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  update pgflow.workers set stopped_at = coalesce(stopped_at, pgflow.now())
  where worker_id = mark_worker_stopped.worker_id;
  if not found then
    perform pgflow._no_such(format('mark_worker_stopped: worker %s is not registered',
      coalesce(mark_worker_stopped.worker_id::text, 'NULL')));
  end if;
end;
$$;

-- Registers (or re-registers) a worker serving a flow's queue.
create or replace function pgflow.register_worker(worker_id uuid, queue_name text, function_name text)
returns pgflow.workers
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_worker pgflow.workers;
begin
  if register_worker.worker_id is null then
    perform pgflow._raise_invalid('register_worker: worker_id must not be NULL');
  end if;
  if coalesce(register_worker.queue_name, '') = '' or coalesce(register_worker.function_name, '') = '' then
    perform pgflow._raise_invalid(format(
      'register_worker(%s): queue_name and function_name must be non-empty', register_worker.worker_id));
  end if;
  insert into pgflow.workers (worker_id, queue_name, function_name, started_at, last_heartbeat_at)
  values (register_worker.worker_id, register_worker.queue_name, register_worker.function_name,
          pgflow.now(), pgflow.now())
  on conflict (worker_id) do update
    set queue_name = excluded.queue_name,
        function_name = excluded.function_name,
        last_heartbeat_at = pgflow.now(),
        stopped_at = null
  returning * into v_worker;
  return v_worker;
end;
$$;

-- Records a heartbeat; returns true when the worker was deprecated and should
-- stop taking work (a newer version is being deployed).
create or replace function pgflow.worker_heartbeat(worker_id uuid)
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_deprecated boolean;
begin
  update pgflow.workers set last_heartbeat_at = pgflow.clock_now()
  where worker_id = worker_heartbeat.worker_id
  returning deprecated_at is not null into v_deprecated;
  if not found then
    perform pgflow._no_such(format('worker_heartbeat: worker %s is not registered',
      coalesce(worker_heartbeat.worker_id::text, 'NULL')));
  end if;
  return v_deprecated;
end;
$$;

-- Deprecates the live workers of a function (or of every function when NULL):
-- they finish their in-flight tasks and stop. Returns how many were marked.
create or replace function pgflow.deprecate_workers(function_name text default null)
returns int
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_count int;
begin
  update pgflow.workers set deprecated_at = pgflow.now()
  where deprecated_at is null and stopped_at is null
    and (deprecate_workers.function_name is null or function_name = deprecate_workers.function_name);
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

-- ==== sql/engine/keep_alive.sql ====
-- Keeping workers alive on Supabase.
--
-- An edge function instance lives at most its wall-clock limit (150 s free,
-- 400 s paid). pg_cron calls pgflow.ensure_workers() every few seconds; for
-- each tracked function with no live worker it asks pg_net to invoke the
-- function (debounced), which boots a new worker. Credentials come from
-- Supabase Vault: secret "edgeflow_functions_url" (e.g.
-- https://<ref>.supabase.co/functions/v1) and "edgeflow_service_role_key", or
-- pgflow's secrets ("supabase_project_id", "pgflow_auth_secret",
-- "supabase_service_role_key"), so a switched project needs no new ones.
-- Without pg_net the function still reports what it would invoke, so a local
-- runtime can do the calling (src/dev plays pg_net's part in tests).

-- Registers a function for keep-alive (idempotent): run once per worker function,
-- e.g. in the migration that deploys it (the demo does it at startup).
create or replace function pgflow.track_worker_function(function_name text)
returns pgflow.worker_functions
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_row pgflow.worker_functions;
begin
  if coalesce(track_worker_function.function_name, '') = '' then
    perform pgflow._raise_invalid('track_worker_function: function_name must be non-empty');
  end if;
  insert into pgflow.worker_functions (function_name)
  values (track_worker_function.function_name)
  on conflict (function_name) do update set updated_at = pgflow.now()
  returning * into v_row;
  return v_row;
end;
$$;

-- A secret from Supabase Vault, or NULL when Vault or the secret is absent.
create or replace function pgflow._vault_secret(p_name text)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_secret text;
begin
  if pgflow._trusted_relation('vault.decrypted_secrets') is null then
    return null;
  end if;
  execute 'select decrypted_secret from vault.decrypted_secrets where name = $1 limit 1'
    into v_secret using p_name;
  return v_secret;
end;
$$;

-- True when functions are served locally: the database has the local Supabase
-- stack's JWT secret (app.settings.jwt_secret equal to the Supabase CLI's
-- documented default, as pgflow checks), or edgeflow's
-- functions URL points at this machine. False when neither is set.
create or replace function pgflow.is_local()
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(nullif(current_setting('app.settings.jwt_secret', true), '')
                    = 'super-secret-jwt-token-with-at-least-32-characters-long', false)
      or coalesce(pgflow._vault_secret('edgeflow_functions_url')
                    ~ '^https?://(localhost|127\.0\.0\.1|host\.docker\.internal|kong)(:|/|$)', false);
$$;

-- Where tracked functions are served: Vault's edgeflow_functions_url, else
-- pgflow's supabase_project_id (https://<id>.supabase.co/functions/v1), else,
-- on a local stack, Supabase's local gateway. NULL when unknown.
create or replace function pgflow._functions_url()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(
    rtrim(nullif(pgflow._vault_secret('edgeflow_functions_url'), ''), '/'),
    'https://' || nullif(pgflow._vault_secret('supabase_project_id'), '') || '.supabase.co/functions/v1',
    case when pgflow.is_local() then 'http://kong:8000/functions/v1' end);
$$;

-- Pings tracked functions so each has a live worker (pgflow 0.10's API):
--   local stack (pgflow.is_local()): every enabled function, every call;
--   production: enabled functions with no live worker that were not pinged
--   within their debounce, and only with credentials (a functions URL and a
--   key: edgeflow_service_role_key, pgflow_auth_secret or
--   supabase_service_role_key in Vault); without them nothing is pinged.
-- A worker is live when it is neither stopped nor deprecated and sent a
-- heartbeat within heartbeat_timeout; a stale heartbeat counts as dead.
-- Without pg_net nothing can be sent: the functions due (production rules)
-- are returned with invoked = false, so a local runtime can do the calling
-- (src/dev/keep_alive.ts).
create or replace function pgflow.ensure_workers(heartbeat_timeout interval default '15 seconds')
returns table (function_name text, invoked boolean, request_id bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_has_net boolean := pgflow._trusted_function('net.http_post(text,jsonb,jsonb,jsonb,integer)') is not null;
  v_local boolean := pgflow.is_local();
  v_url text := pgflow._functions_url();
  v_key text := coalesce(nullif(pgflow._vault_secret('edgeflow_service_role_key'), ''),
                         nullif(pgflow._vault_secret('pgflow_auth_secret'), ''),
                         nullif(pgflow._vault_secret('supabase_service_role_key'), ''));
  v_function text;
  v_request bigint;
begin
  if heartbeat_timeout is null or heartbeat_timeout <= interval '0' then
    perform pgflow._raise_invalid(format(
      'ensure_workers: heartbeat_timeout must be a positive interval, got %s',
      coalesce(heartbeat_timeout::text, 'NULL')));
  end if;
  if v_has_net and (v_url is null or (not v_local and v_key is null)) then
    return;
  end if;
  for v_function in
    update pgflow.worker_functions wf
       set last_invoked_at = pgflow.now(), updated_at = pgflow.now()
     where wf.enabled
       and ((v_local and v_has_net)
         or ((wf.last_invoked_at is null or wf.last_invoked_at <= pgflow.now() - wf.debounce)
             and not exists (
               select 1 from pgflow.workers w
               where w.function_name = wf.function_name
                 and w.stopped_at is null and w.deprecated_at is null
                 and w.last_heartbeat_at > pgflow.now() - ensure_workers.heartbeat_timeout)))
    returning wf.function_name
  loop
    v_request := null;
    if v_has_net then
      execute 'select net.http_post(url => $1, body => $2, params => $3, headers => $4, timeout_milliseconds => $5)'
        into v_request
        using v_url || '/' || v_function,
              '{}'::jsonb,
              '{}'::jsonb,
              jsonb_build_object('Content-Type', 'application/json')
                || case when v_key is null or v_local then '{}'::jsonb
                        else jsonb_build_object('Authorization', 'Bearer ' || v_key) end,
              5000;
    end if;
    function_name := v_function;
    invoked := v_has_net;
    request_id := v_request;
    return next;
  end loop;
end;
$$;

-- The cron jobs of worker management: pgflow's names, so a database switched
-- from pgflow keeps its jobs, plus the one edgeflow schedules by itself.
create or replace function pgflow._keep_alive_job_names()
returns text[]
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select array['pgflow_ensure_workers', 'pgflow_cleanup_logs', 'edgeflow_ensure_workers'];
$$;

-- Whether a pg_cron job of this name exists (false without a trusted pg_cron).
create or replace function pgflow._cron_job_exists(p_name text)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_found boolean;
begin
  if pgflow._trusted_relation('cron.job') is null then
    return false;
  end if;
  execute 'select exists (select 1 from cron.job where jobname = $1)' into v_found using p_name;
  return v_found;
end;
$$;

-- pgflow 0.10's setup: schedules ensure_workers every cron_interval
-- (pg_cron syntax: '1 second' .. '59 seconds' or a cron expression) and the
-- log cleanup hourly, replacing earlier jobs of either name and edgeflow's own
-- default job. Returns what it scheduled.
create or replace function pgflow.setup_ensure_workers_cron(cron_interval text default '1 second')
returns text
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_name text;
  v_ensure bigint;
  v_cleanup bigint;
begin
  if pgflow._trusted_function('cron.schedule(text,text,text)') is null
     or pgflow._trusted_function('cron.unschedule(text)') is null then
    perform pgflow._raise_invalid(
      'setup_ensure_workers_cron: pg_cron is not installed (or not owned by a trusted role); enable pg_cron first');
  end if;
  if setup_ensure_workers_cron.cron_interval is null or btrim(setup_ensure_workers_cron.cron_interval) = '' then
    perform pgflow._raise_invalid('setup_ensure_workers_cron: cron_interval must be a pg_cron schedule, got NULL or empty');
  end if;
  foreach v_name in array pgflow._keep_alive_job_names() loop
    if pgflow._cron_job_exists(v_name) then
      execute 'select cron.unschedule($1)' using v_name;
    end if;
  end loop;
  execute 'select cron.schedule($1, $2, $3)' into v_ensure
    using 'pgflow_ensure_workers', setup_ensure_workers_cron.cron_interval, 'select pgflow.ensure_workers()';
  execute 'select cron.schedule($1, $2, $3)' into v_cleanup
    using 'pgflow_cleanup_logs', '0 * * * *', 'select pgflow.cleanup_ensure_workers_logs()';
  return format('scheduled pgflow_ensure_workers (every %s, job %s) and pgflow_cleanup_logs (hourly, job %s)',
    setup_ensure_workers_cron.cron_interval, v_ensure, v_cleanup);
end;
$$;

-- Deletes pg_cron's run logs of worker management's own jobs older than
-- retention_hours (other jobs' logs are left alone); returns how many went.
create or replace function pgflow.cleanup_ensure_workers_logs(retention_hours int default 24)
returns table (cron_deleted bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if cleanup_ensure_workers_logs.retention_hours is null or cleanup_ensure_workers_logs.retention_hours < 0 then
    perform pgflow._raise_invalid(format(
      'cleanup_ensure_workers_logs: retention_hours must be >= 0, got %s',
      coalesce(cleanup_ensure_workers_logs.retention_hours::text, 'NULL')));
  end if;
  if pgflow._trusted_relation('cron.job') is null or pgflow._trusted_relation('cron.job_run_details') is null then
    cron_deleted := 0;
    return next;
    return;
  end if;
  execute '
    with gone as (
      delete from cron.job_run_details d
      using cron.job j
      where j.jobid = d.jobid and j.jobname = any($1)
        and d.end_time < $2
      returning 1)
    select count(*) from gone'
    into cron_deleted
    using pgflow._keep_alive_job_names(),
          pgflow.now() - make_interval(hours => cleanup_ensure_workers_logs.retention_hours);
  return next;
end;
$$;

-- pg_cron, where it exists, runs ensure_workers every 5 seconds (second
-- intervals need pg_cron 1.5+; older versions get every minute), unless
-- setup_ensure_workers_cron (or pgflow, before a switch) scheduled
-- pgflow_ensure_workers. Installs cleanly without pg_cron.
do $$
begin
  if to_regnamespace('cron') is not null
     and pgflow._trusted_function('cron.schedule(text,text,text)') is not null
     and not pgflow._cron_job_exists('pgflow_ensure_workers') then
    begin
      perform cron.schedule('edgeflow_ensure_workers', '5 seconds', 'select pgflow.ensure_workers()');
    exception when others then
      perform cron.schedule('edgeflow_ensure_workers', '* * * * *', 'select pgflow.ensure_workers()');
    end;
  end if;
end
$$;

-- ==== sql/engine/flow_shapes.sql ====
-- Compile at startup. A worker sends its flow's shape (src/dsl/flow_shape.ts,
-- or pgflow's extractFlowShape) and the core creates the flow when it is
-- missing, verifies it when it exists, or lists what differs.
--
-- Shape (pgflow's format): {"options"?: {"maxAttempts"?, "baseDelay"?, "timeout"?},
--   "steps": [{"slug", "stepType", "dependencies": [..],
--              "options"?: {"maxAttempts"?, "baseDelay"?, "timeout"?, "startDelay"?}}]}
-- with steps in definition order. Options may be absent or null (the default,
-- or inherited from the flow). They are used when the flow is created and are
-- not compared: operators tune them with UPDATE pgflow.steps / pgflow.flows.
-- A step's condition (pgflow 0.14's keys) is structure: "whenUnmet" and
-- "whenExhausted" ('fail' | 'skip' | 'skip-cascade'), "requiredInputPattern" and
-- "forbiddenInputPattern" ({"defined": false} or {"defined": true, "value": {..}}).
-- Absent keys mean the defaults (skip, fail, no pattern), so shapes of workers
-- older than pgflow 0.14 compare equal; the stored shape leaves defaults out.

-- The stored definition as a shape: {"steps": []} when the flow does not exist;
-- dependencies sorted; options without null values, a step's left out when
-- it has none.
create or replace function pgflow._get_flow_shape(p_flow_slug text)
returns jsonb
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce((
    select jsonb_build_object(
      'options', jsonb_build_object(
        'maxAttempts', f.opt_max_attempts, 'baseDelay', f.opt_base_delay, 'timeout', f.opt_timeout),
      'steps', coalesce((
        select jsonb_agg(
                 jsonb_build_object(
                   'slug', s.step_slug,
                   'stepType', s.step_type,
                   'dependencies', coalesce((
                     select jsonb_agg(d.dep_slug order by d.dep_slug collate "C")
                     from pgflow.deps d
                     where d.flow_slug = s.flow_slug and d.step_slug = s.step_slug), '[]'::jsonb))
                 || case when s.when_unmet = 'skip' then '{}'::jsonb
                         else jsonb_build_object('whenUnmet', s.when_unmet) end
                 || case when s.when_exhausted = 'fail' then '{}'::jsonb
                         else jsonb_build_object('whenExhausted', s.when_exhausted) end
                 || case when s.required_input_pattern is null then '{}'::jsonb
                         else jsonb_build_object('requiredInputPattern',
                                jsonb_build_object('defined', true, 'value', s.required_input_pattern)) end
                 || case when s.forbidden_input_pattern is null then '{}'::jsonb
                         else jsonb_build_object('forbiddenInputPattern',
                                jsonb_build_object('defined', true, 'value', s.forbidden_input_pattern)) end
                 || case when o.options = '{}'::jsonb then '{}'::jsonb
                         else jsonb_build_object('options', o.options) end
               order by s.step_index)
        from pgflow.steps s
        cross join lateral (select jsonb_strip_nulls(jsonb_build_object(
                 'maxAttempts', s.opt_max_attempts, 'baseDelay', s.opt_base_delay,
                 'timeout', s.opt_timeout, 'startDelay', s.opt_start_delay)) as options) o
        where s.flow_slug = f.flow_slug), '[]'::jsonb))
    from pgflow.flows f
    where f.flow_slug = p_flow_slug),
    jsonb_build_object('steps', '[]'::jsonb));
$$;

-- Checks one option of a shape (camelCase key, e.g. "startDelay"): absent or
-- null, or an integer within pgflow._option_bounds; raises naming it.
create or replace function pgflow._check_shape_option(what text, label text, key text, value jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_option text := lower(regexp_replace(key, '([A-Z])', '_\1', 'g'));
  v_number numeric;
  v_bounds record;
begin
  if value is null or jsonb_typeof(value) = 'null' then
    return;
  end if;
  if jsonb_typeof(value) = 'number' then
    v_number := (value #>> '{}')::numeric;
  end if;
  if v_number is null or v_number <> trunc(v_number) or not pgflow._option_in_range(v_option, v_number) then
    v_bounds := pgflow._option_bounds(v_option);
    perform pgflow._raise_invalid(format('%s: shape %s must be an integer between %s and %s, got %s',
      what, label, v_bounds.minimum, v_bounds.maximum, value));
  end if;
end;
$$;

-- Checks that a shape has the structure above; raises naming what is wrong.
create or replace function pgflow._validate_flow_shape(p_flow_slug text, p_shape jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_what text := format('ensure_flow_compiled(%L)', p_flow_slug);
  v_step jsonb;
  v_key text;
begin
  if jsonb_typeof(p_shape) is distinct from 'object'
     or jsonb_typeof(p_shape -> 'steps') is distinct from 'array'
     or jsonb_typeof(coalesce(p_shape -> 'options', '{}')) not in ('object', 'null') then
    perform pgflow._raise_invalid(format(
      '%s: shape must be an object with "steps" (array) and optionally "options" (object)', v_what));
  end if;
  foreach v_key in array array['maxAttempts', 'baseDelay', 'timeout'] loop
    perform pgflow._check_shape_option(v_what, 'options.' || v_key, v_key, p_shape -> 'options' -> v_key);
  end loop;
  for v_step in select value from jsonb_array_elements(p_shape -> 'steps') loop
    if jsonb_typeof(v_step -> 'slug') is distinct from 'string'
       or (v_step ->> 'stepType') is null or (v_step ->> 'stepType') not in ('single', 'map')
       or jsonb_typeof(v_step -> 'dependencies') is distinct from 'array'
       or jsonb_typeof(coalesce(v_step -> 'options', '{}')) not in ('object', 'null') then
      perform pgflow._raise_invalid(format(
        '%s: each shape step needs "slug" (string), "stepType" (single|map), "dependencies" (array) '
        || 'and optionally "options" (object); got %s',
        v_what, v_step));
    end if;
    foreach v_key in array array['maxAttempts', 'baseDelay', 'timeout', 'startDelay'] loop
      perform pgflow._check_shape_option(v_what,
        format('step %L option %s', v_step ->> 'slug', v_key), v_key, v_step -> 'options' -> v_key);
    end loop;
    foreach v_key in array array['whenUnmet', 'whenExhausted'] loop
      if coalesce(v_step ->> v_key, 'skip') not in ('fail', 'skip', 'skip-cascade') then
        perform pgflow._raise_invalid(format(
          '%s: step %L: shape %s must be "fail", "skip" or "skip-cascade", got %s',
          v_what, v_step ->> 'slug', v_key, v_step -> v_key));
      end if;
    end loop;
    foreach v_key in array array['requiredInputPattern', 'forbiddenInputPattern'] loop
      if jsonb_typeof(coalesce(v_step -> v_key, 'null')) <> 'null'
         and (jsonb_typeof(v_step -> v_key) <> 'object'
              or jsonb_typeof(v_step -> v_key -> 'defined') is distinct from 'boolean'
              or ((v_step -> v_key ->> 'defined')::boolean
                  and jsonb_typeof(v_step -> v_key -> 'value') is distinct from 'object')) then
        perform pgflow._raise_invalid(format(
          '%s: step %L: shape %s must be {"defined": false} or {"defined": true, "value": <object>}, got %s',
          v_what, v_step ->> 'slug', v_key, v_step -> v_key));
      end if;
    end loop;
  end loop;
end;
$$;

-- A shape step's condition with the defaults filled in: {"whenUnmet",
-- "whenExhausted", "requiredInputPattern", "forbiddenInputPattern"}, a pattern
-- being its value or JSON null.
create or replace function pgflow._shape_step_condition(p_step jsonb)
returns jsonb
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object(
    'whenUnmet', coalesce(p_step ->> 'whenUnmet', 'skip'),
    'whenExhausted', coalesce(p_step ->> 'whenExhausted', 'fail'),
    'requiredInputPattern', case when (p_step -> 'requiredInputPattern' ->> 'defined')::boolean
                                 then p_step -> 'requiredInputPattern' -> 'value' else 'null' end,
    'forbiddenInputPattern', case when (p_step -> 'forbiddenInputPattern' ->> 'defined')::boolean
                                  then p_step -> 'forbiddenInputPattern' -> 'value' else 'null' end);
$$;

-- Structural differences between the code's shape and the database's, in
-- words, compared by position as pgflow does: step count, the slug at each
-- index, step type, dependencies and condition. Options are not structure.
-- Empty when equal.
create or replace function pgflow._compare_flow_shapes(p_local jsonb, p_db jsonb)
returns text[]
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_diffs text[] := '{}';
  v_local_steps jsonb := coalesce(p_local -> 'steps', '[]');
  v_db_steps jsonb := coalesce(p_db -> 'steps', '[]');
  v_local_count int := jsonb_array_length(coalesce(p_local -> 'steps', '[]'));
  v_db_count int := jsonb_array_length(coalesce(p_db -> 'steps', '[]'));
  v_local jsonb;
  v_db jsonb;
  v_local_deps text[];
  v_db_deps text[];
  v_local_condition jsonb;
  v_db_condition jsonb;
  v_key text;
begin
  if v_local_count <> v_db_count then
    v_diffs := v_diffs || format('step count: code has %s, database has %s', v_local_count, v_db_count);
  end if;
  for v_index in 0 .. greatest(v_local_count, v_db_count) - 1 loop
    v_local := v_local_steps -> v_index;
    v_db := v_db_steps -> v_index;
    if v_local is null then
      v_diffs := v_diffs || format('step at index %s: the code has none, the database has %L',
        v_index, v_db ->> 'slug');
      continue;
    elsif v_db is null then
      v_diffs := v_diffs || format('step at index %s: the code has %L, the database has none',
        v_index, v_local ->> 'slug');
      continue;
    end if;
    if (v_local ->> 'slug') is distinct from (v_db ->> 'slug') then
      v_diffs := v_diffs || format('step at index %s: code has slug %L, database has %L',
        v_index, v_local ->> 'slug', v_db ->> 'slug');
    end if;
    if (v_local ->> 'stepType') is distinct from (v_db ->> 'stepType') then
      v_diffs := v_diffs || format('step at index %s (%L): code has step type %s, database has %s',
        v_index, v_local ->> 'slug', v_local ->> 'stepType', v_db ->> 'stepType');
    end if;
    select coalesce(array_agg(e order by e collate "C"), '{}') into v_local_deps
    from jsonb_array_elements_text(coalesce(v_local -> 'dependencies', '[]')) e;
    select coalesce(array_agg(e order by e collate "C"), '{}') into v_db_deps
    from jsonb_array_elements_text(coalesce(v_db -> 'dependencies', '[]')) e;
    if v_local_deps is distinct from v_db_deps then
      v_diffs := v_diffs || format('step at index %s (%L): code depends on [%s], database on [%s]',
        v_index, v_local ->> 'slug', array_to_string(v_local_deps, ', '), array_to_string(v_db_deps, ', '));
    end if;
    v_local_condition := pgflow._shape_step_condition(v_local);
    v_db_condition := pgflow._shape_step_condition(v_db);
    foreach v_key in array array['whenUnmet', 'whenExhausted', 'requiredInputPattern', 'forbiddenInputPattern'] loop
      if (v_local_condition -> v_key) is distinct from (v_db_condition -> v_key) then
        v_diffs := v_diffs || format('step at index %s (%L): code has %s %s, database has %s',
          v_index, v_local ->> 'slug', v_key, v_local_condition -> v_key, v_db_condition -> v_key);
      end if;
    end loop;
  end loop;
  return v_diffs;
end;
$$;

-- Creates a flow from a shape (create_flow, then add_step in order).
create or replace function pgflow._create_flow_from_shape(p_flow_slug text, p_shape jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_step jsonb;
  v_condition jsonb;
begin
  perform pgflow.create_flow(
    flow_slug => p_flow_slug,
    max_attempts => (p_shape -> 'options' ->> 'maxAttempts')::int,
    base_delay => (p_shape -> 'options' ->> 'baseDelay')::int,
    timeout => (p_shape -> 'options' ->> 'timeout')::int);
  for v_step in
    select e.value from jsonb_array_elements(p_shape -> 'steps') with ordinality as e(value, ord) order by e.ord
  loop
    v_condition := pgflow._shape_step_condition(v_step);
    perform pgflow.add_step(
      flow_slug => p_flow_slug,
      step_slug => v_step ->> 'slug',
      deps_slugs => array(select jsonb_array_elements_text(v_step -> 'dependencies')),
      max_attempts => (v_step -> 'options' ->> 'maxAttempts')::int,
      base_delay => (v_step -> 'options' ->> 'baseDelay')::int,
      timeout => (v_step -> 'options' ->> 'timeout')::int,
      start_delay => (v_step -> 'options' ->> 'startDelay')::int,
      step_type => v_step ->> 'stepType',
      required_input_pattern => nullif(v_condition -> 'requiredInputPattern', 'null'),
      forbidden_input_pattern => nullif(v_condition -> 'forbiddenInputPattern', 'null'),
      when_unmet => v_condition ->> 'whenUnmet',
      when_exhausted => v_condition ->> 'whenExhausted');
  end loop;
end;
$$;

-- Deletes a flow with all its runs, states, tasks and its queue. Irreversible.
create or replace function pgflow.delete_flow_and_data(p_flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  -- First, as in create_flow: the queue's access is compiled again below.
  perform pgflow._lock_flow_definitions();
  perform 1 from pgflow.flows where flow_slug = p_flow_slug for update;
  if not found then
    perform pgflow._no_such(format('delete_flow_and_data: flow %s does not exist',
      coalesce(quote_literal(p_flow_slug), 'NULL')));
  end if;
  delete from pgflow.step_tasks where flow_slug = p_flow_slug;
  delete from pgflow.step_states where flow_slug = p_flow_slug;
  delete from pgflow.runs where flow_slug = p_flow_slug;
  delete from pgflow.deps where flow_slug = p_flow_slug;
  delete from pgflow.steps where flow_slug = p_flow_slug;
  delete from pgflow.flows where flow_slug = p_flow_slug;
  perform pgmq.drop_queue(p_flow_slug);
  perform pgflow._compile_queue_access();
end;
$$;

-- Makes the database's definition of a flow match the code's shape:
--   compiled   the flow was missing and has been created;
--   verified   it exists and matches;
--   recompiled it differed and allow_data_loss (or, as in pgflow, a local
--              Supabase stack: pgflow.is_local()) let it be deleted and created again;
--   mismatch   it differs; nothing changed; "differences" says how.
-- Concurrent callers for one flow are serialised, so it is never created twice.
create or replace function pgflow.ensure_flow_compiled(
  flow_slug text,
  shape jsonb,
  allow_data_loss boolean default false
)
returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_db jsonb;
  v_diffs text[];
begin
  perform pgflow._validate_flow_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
  perform pg_advisory_xact_lock(hashtext('pgflow.ensure_flow_compiled'), hashtext(ensure_flow_compiled.flow_slug));

  perform 1 from pgflow.flows where flow_slug = ensure_flow_compiled.flow_slug;
  if not found then
    perform pgflow._create_flow_from_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
    return jsonb_build_object('status', 'compiled', 'differences', '[]'::jsonb);
  end if;

  v_db := pgflow._get_flow_shape(ensure_flow_compiled.flow_slug);
  v_diffs := pgflow._compare_flow_shapes(ensure_flow_compiled.shape, v_db);
  if cardinality(v_diffs) = 0 then
    return jsonb_build_object('status', 'verified', 'differences', '[]'::jsonb);
  end if;
  if coalesce(ensure_flow_compiled.allow_data_loss, false) or pgflow.is_local() then
    perform pgflow.delete_flow_and_data(ensure_flow_compiled.flow_slug);
    perform pgflow._create_flow_from_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
    return jsonb_build_object('status', 'recompiled', 'differences', to_jsonb(v_diffs));
  end if;
  return jsonb_build_object('status', 'mismatch', 'differences', to_jsonb(v_diffs));
end;
$$;

-- ==== sql/engine/maintenance.sql ====
-- Maintenance: retention of finished runs, archived messages and old workers.

-- Retention: deletes finished runs (with their step states and tasks),
-- archived queue messages and stopped (or long silent) workers older than the
-- interval; returns how many of each went.
create or replace function pgflow.prune_finished_data(retention_interval interval)
returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_cutoff timestamptz;
  v_runs uuid[];
  v_tasks int;
  v_states int;
  v_messages bigint := 0;
  v_count bigint;
  v_workers int;
  v_flow text;
begin
  if retention_interval is null or retention_interval < interval '0' then
    raise exception 'prune_finished_data: retention_interval must be a non-negative interval, got %',
      coalesce(retention_interval::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  v_cutoff := pgflow.now() - retention_interval;

  select coalesce(array_agg(r.run_id), '{}') into v_runs
  from pgflow.runs r
  where r.status <> 'started' and coalesce(r.completed_at, r.failed_at, r.cancelled_at) < v_cutoff;

  delete from pgflow.step_tasks where run_id = any(v_runs);
  get diagnostics v_tasks = row_count;
  delete from pgflow.step_states where run_id = any(v_runs);
  get diagnostics v_states = row_count;
  delete from pgflow.runs where run_id = any(v_runs);

  for v_flow in select flow_slug from pgflow.flows loop
    if to_regclass(format('pgmq.%I', 'a_' || lower(v_flow))) is not null then
      -- archived_at is on pgmq's clock, the cutoff on the engine's.
      execute format('delete from pgmq.%I where archived_at < $1', 'a_' || lower(v_flow))
        using pgflow._queue_time(v_cutoff);
      get diagnostics v_count = row_count;
      v_messages := v_messages + v_count;
    end if;
  end loop;

  -- A worker row goes when the worker stopped before the cutoff, or fell silent
  -- before it and at least an hour ago: a live worker is never pruned, even with
  -- a short interval.
  delete from pgflow.workers
  where stopped_at < v_cutoff
     or (stopped_at is null and last_heartbeat_at < least(v_cutoff, pgflow.now() - interval '1 hour'));
  get diagnostics v_workers = row_count;

  return jsonb_build_object(
    'runs', cardinality(v_runs), 'step_states', v_states, 'step_tasks', v_tasks,
    'archived_messages', v_messages, 'workers', v_workers);
end;
$$;

-- pgflow's documented signature (returns nothing). pgflow's users created it
-- in their own migrations from pgflow's docs; with the same signature and
-- return type, their CREATE OR REPLACE keeps working after the switch.
create or replace function pgflow.prune_data_older_than(retention_interval interval)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow.prune_finished_data(prune_data_older_than.retention_interval);
end;
$$;

-- ==== sql/engine/privileges.sql ====
-- Nothing in schema pgflow is reachable by a role that was not granted it.
-- README.md ("Grants") lists what a client role needs to start and watch runs.
--
-- Every release runs this file, so it only takes from PUBLIC what PostgreSQL
-- gives PUBLIC by default (EXECUTE on new functions): the grants a project
-- made to its own roles survive upgrades. Supabase's anon and authenticated
-- roles were stripped once, by release 001; since then they hold what the
-- project granted them, nothing more.
revoke all on schema pgflow from public;

revoke all on all tables in schema pgflow from public;

revoke all on all sequences in schema pgflow from public;

revoke all on all functions in schema pgflow from public;

-- Functions created later by the same role are not executable by PUBLIC either.
alter default privileges in schema pgflow revoke execute on functions from public;

-- ==== sql/engine/switch_grants.sql ====
-- The last step of taking over a pgflow installation (sql/upgrades/002): the
-- grants pgflow's objects had are given on edgeflow's objects of the same name
-- (a function by its argument types, else the only function of that name).
-- Runs after privileges.sql, so the release's revokes do not undo them. What
-- has no counterpart is named in a warning. The table goes once applied.
do $$
declare
  v_grant record;
  v_target text;
begin
  if to_regclass('pgflow.switch_grants') is null then
    return;
  end if;
  for v_grant in select * from pgflow.switch_grants order by object_kind, object_name, grantee loop
    v_target := case v_grant.object_kind
      when 'schema' then 'schema pgflow'
      when 'table' then 'table ' || to_regclass(v_grant.object_name)::text
      when 'sequence' then 'sequence ' || to_regclass(v_grant.object_name)::text
      when 'function' then 'function ' || coalesce(
        to_regprocedure(v_grant.object_name)::text,
        (select min(p.oid::regprocedure::text) from pg_catalog.pg_proc p
         where p.pronamespace = 'pgflow'::regnamespace
           and p.proname = split_part(split_part(v_grant.object_name, '.', 2), '(', 1)
         having count(*) = 1))
    end;
    if v_target is null then
      raise warning 'pgflow''s grant of % on % to % has no counterpart in edgeflow; not granted',
        v_grant.privilege, v_grant.object_name, v_grant.grantee;
      continue;
    end if;
    execute format('grant %s on %s to %I%s', v_grant.privilege, v_target, v_grant.grantee,
                   case when v_grant.grantable then ' with grant option' else '' end);
  end loop;
  drop table pgflow.switch_grants;
end
$$;
