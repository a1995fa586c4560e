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
