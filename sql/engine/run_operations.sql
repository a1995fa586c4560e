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
-- {{CANCEL_CHANNEL_PREFIX}}<flow> (payload: the run id) and at their next
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
  if length(cancel_run.reason) > {{MAX_CANCEL_REASON_LENGTH}} then
    perform pgflow._raise_invalid(format('%s: reason must be at most %s characters, got %s',
      v_what, {{MAX_CANCEL_REASON_LENGTH}}, length(cancel_run.reason)));
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
  perform pg_notify('{{CANCEL_CHANNEL_PREFIX}}' || v_run.flow_slug, v_run.run_id::text);
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
