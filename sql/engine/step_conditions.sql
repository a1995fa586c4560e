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
