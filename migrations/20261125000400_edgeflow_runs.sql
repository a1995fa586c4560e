-- edgeflow SQL core, part 5: the public run API used by clients and workers.

create function pgflow._no_such(what text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', what using errcode = 'no_data_found';
end;
$$;

create function pgflow.start_flow(flow_slug text, input jsonb, run_id uuid default null)
returns setof pgflow.runs
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('start_flow(%L)', start_flow.flow_slug);
  v_run pgflow.runs;
  v_steps int;
  v_root_map text;
  v_input_length int;
begin
  perform 1 from pgflow.flows where flow_slug = start_flow.flow_slug;
  if not found then
    perform pgflow._no_such(format('%s: flow %s does not exist', v_what,
      coalesce(quote_literal(start_flow.flow_slug), 'NULL')));
  end if;
  if start_flow.input is null then
    perform pgflow._raise_invalid(format(
      '%s: input must not be SQL NULL; pass ''null''::jsonb for a JSON null', v_what));
  end if;
  select count(*) into v_steps from pgflow.steps where flow_slug = start_flow.flow_slug;
  if v_steps = 0 then
    perform pgflow._raise_invalid(format('%s: the flow has no steps; add steps with pgflow.add_step', v_what));
  end if;
  select step_slug into v_root_map from pgflow.steps
  where flow_slug = start_flow.flow_slug and step_type = 'map' and deps_count = 0
  order by step_index limit 1;
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

  begin
    insert into pgflow.runs (run_id, flow_slug, input, remaining_steps)
    values (coalesce(start_flow.run_id, gen_random_uuid()), start_flow.flow_slug, start_flow.input, v_steps)
    returning * into v_run;
  exception when unique_violation then
    perform pgflow._raise_invalid(format('%s: run %s already exists', v_what, start_flow.run_id));
  end;

  insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, initial_tasks)
  select s.flow_slug, v_run.run_id, s.step_slug, s.deps_count,
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
end;
$$;

-- Fails every task still 'started' past its own step's timeout plus the 2 s
-- margin start_tasks gives its message (its worker vanished): each such attempt
-- is retried with backoff, or fails the run when attempts are used up. Limited
-- to a flow and to some messages when given; returns the messages of the tasks
-- it failed. Used by start_tasks (messages that came back) and requeue_stalled_tasks.
--
-- The deadline is compared with clock_timestamp(), the clock pgmq.read uses,
-- not now() (the transaction's start): start_tasks set the message's vt to
-- clock_timestamp() + timeout + 2 after started_at (= its now()), so a message
-- read when its vt had passed always has started_at + timeout + 2 <= the read's
-- clock <= this clock, even when the reading transaction began before the
-- deadline (complete_task_and_claim, a long read_with_poll).
create function pgflow._fail_stalled_tasks(p_flow_slug text, p_msg_ids bigint[])
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
    from pgflow.step_tasks t
    join pgflow.steps s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
    join pgflow.flows f on f.flow_slug = t.flow_slug
    where t.status = 'started'
      and (p_flow_slug is null or t.flow_slug = p_flow_slug)
      and (p_msg_ids is null or t.message_id = any(p_msg_ids))
      and t.started_at + make_interval(secs => coalesce(s.opt_timeout, f.opt_timeout) + 2) <= clock_timestamp()
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

-- Phase 2 of polling: turns the messages a worker reserved with
-- pgmq.read_with_poll into started tasks with their inputs. A message whose
-- task is still 'started' past the step timeout came back because its worker
-- vanished: that attempt counts as failed (retry with backoff, or fail).
create function pgflow.start_tasks(flow_slug text, msg_ids bigint[], worker_id uuid)
returns setof pgflow.step_task_record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('start_tasks(%L)', start_tasks.flow_slug);
  v_stale_ids bigint[];
  v_runs uuid[];
  v_steps text[];
  v_indexes int[];
  v_msgs bigint[];
  v_group record;
  v_input jsonb;
  v_dep record;
begin
  perform 1 from pgflow.flows where flow_slug = start_tasks.flow_slug;
  if not found then
    perform pgflow._no_such(format('%s: flow %s does not exist', v_what,
      coalesce(quote_literal(start_tasks.flow_slug), 'NULL')));
  end if;
  if start_tasks.worker_id is null then
    perform pgflow._raise_invalid(format('%s: worker_id must not be NULL', v_what));
  end if;
  if start_tasks.msg_ids is null or cardinality(start_tasks.msg_ids) = 0 then
    return;
  end if;

  v_stale_ids := pgflow._fail_stalled_tasks(start_tasks.flow_slug, start_tasks.msg_ids);

  with picked as (
    update pgflow.step_tasks t
       set status = 'started',
           started_at = now(),
           attempts_count = t.attempts_count + 1,
           last_worker_id = start_tasks.worker_id
      from pgflow.runs r
     where t.flow_slug = start_tasks.flow_slug
       and t.message_id = any(start_tasks.msg_ids)
       and t.status = 'queued'
       and not (t.message_id = any(v_stale_ids))
       and r.run_id = t.run_id
       and r.status = 'started'
    returning t.run_id, t.step_slug, t.task_index, t.message_id
  )
  select array_agg(run_id), array_agg(step_slug), array_agg(task_index), array_agg(message_id)
    into v_runs, v_steps, v_indexes, v_msgs
  from picked;

  if v_msgs is null then
    return;
  end if;

  -- The message stays hidden for the step's timeout plus a margin; if no
  -- report arrives by then it becomes visible and the attempt counts as stale.
  perform pgflow.set_vt_batch(start_tasks.flow_slug, v_msgs, array(
    select coalesce(s.opt_timeout, f.opt_timeout) + 2
    from unnest(v_steps) with ordinality as p(step_slug, ord)
    join pgflow.steps s on s.flow_slug = start_tasks.flow_slug and s.step_slug = p.step_slug
    join pgflow.flows f on f.flow_slug = s.flow_slug
    order by p.ord));

  -- Inputs are built per (run, step) so a map's source array is read once per call.
  for v_group in
    select p.run_id, p.step_slug, s.step_type, s.deps_count,
           array_agg(p.task_index order by p.task_index) as task_indexes,
           array_agg(p.message_id order by p.task_index) as message_ids
    from unnest(v_runs, v_steps, v_indexes, v_msgs) as p(run_id, step_slug, task_index, message_id)
    join pgflow.steps s on s.flow_slug = start_tasks.flow_slug and s.step_slug = p.step_slug
    group by p.run_id, p.step_slug, s.step_type, s.deps_count
  loop
    if v_group.step_type = 'single' then
      select jsonb_build_object('run', r.input) || coalesce((
               select jsonb_object_agg(d.dep_slug, pgflow._step_output(r.run_id, d.dep_slug, ds.step_type))
               from pgflow.deps d
               join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
               where d.flow_slug = start_tasks.flow_slug and d.step_slug = v_group.step_slug), '{}'::jsonb)
        into v_input
      from pgflow.runs r where r.run_id = v_group.run_id;
      return query
        select start_tasks.flow_slug, v_group.run_id, v_group.step_slug, v_input,
               v_group.message_ids[1], v_group.task_indexes[1];
      continue;
    end if;

    select d.dep_slug, ds.step_type into v_dep
    from pgflow.deps d
    join pgflow.steps ds on ds.flow_slug = d.flow_slug and ds.step_slug = d.dep_slug
    where d.flow_slug = start_tasks.flow_slug and d.step_slug = v_group.step_slug;

    if v_dep.step_type = 'map' then
      -- Map over a map: element i is task i's output of the source map.
      return query
        select start_tasks.flow_slug, v_group.run_id, v_group.step_slug, src.output, u.msg_id, u.idx
        from unnest(v_group.task_indexes, v_group.message_ids) as u(idx, msg_id)
        join pgflow.step_tasks src
          on src.run_id = v_group.run_id and src.step_slug = v_dep.dep_slug and src.task_index = u.idx
        order by u.idx;
      continue;
    end if;

    -- Root map (the flow input) or map over a single step's array output.
    if v_dep.dep_slug is null then
      select r.input into v_input from pgflow.runs r where r.run_id = v_group.run_id;
    else
      select t.output into v_input from pgflow.step_tasks t
      where t.run_id = v_group.run_id and t.step_slug = v_dep.dep_slug and t.task_index = 0;
    end if;
    return query
      select start_tasks.flow_slug, v_group.run_id, v_group.step_slug, e.value, u.msg_id, u.idx
      from unnest(v_group.task_indexes, v_group.message_ids) as u(idx, msg_id)
      cross join lateral (select v_input -> u.idx as value) e
      order by u.idx;
  end loop;
end;
$$;

-- Loads and locks a task (and its run, which serialises all state changes of
-- a run) for complete_task / fail_task; one query on the common path, and a
-- clear error naming what is missing otherwise.
create function pgflow._lock_task(caller text, run_id uuid, step_slug text, task_index int)
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

create function pgflow.complete_task(run_id uuid, step_slug text, task_index int, output jsonb)
returns setof pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
  v_step record;
  v_output jsonb := coalesce(complete_task.output, 'null'::jsonb);
  v_error text;
begin
  v_task := pgflow._lock_task('complete_task', complete_task.run_id, complete_task.step_slug, complete_task.task_index);
  -- Late or duplicate reports (task already completed/failed/requeued) change nothing.
  if v_task.status <> 'started' then
    return query select v_task.*;
    return;
  end if;

  select s.step_type,
         (select m.step_slug from pgflow.deps d
          join pgflow.steps m on m.flow_slug = d.flow_slug and m.step_slug = d.step_slug
          where d.flow_slug = s.flow_slug and d.dep_slug = s.step_slug and m.step_type = 'map'
          order by m.step_index limit 1) as map_dependent
    into v_step
  from pgflow.steps s
  where s.flow_slug = v_task.flow_slug and s.step_slug = complete_task.step_slug;

  -- A single step feeding a map must produce an array; otherwise the run fails,
  -- keeping the offending output on the task for debugging.
  if v_step.map_dependent is not null and v_step.step_type = 'single'
     and jsonb_typeof(v_output) <> 'array' then
    v_error := format('[TYPE_VIOLATION] step %L must return an array because map step %L maps over it; got %s',
                      complete_task.step_slug, v_step.map_dependent, jsonb_typeof(v_output));
    update pgflow.step_tasks
       set status = 'failed', failed_at = now(), output = v_output, error_message = v_error
     where run_id = complete_task.run_id and step_slug = complete_task.step_slug
       and task_index = complete_task.task_index
    returning * into v_task;
    perform pgmq.archive(v_task.flow_slug, v_task.message_id);
    perform pgflow._fail_run(complete_task.run_id, complete_task.step_slug, v_error);
    return query select v_task.*;
    return;
  end if;

  update pgflow.step_tasks
     set status = 'completed', completed_at = now(), output = v_output, error_message = null
   where run_id = complete_task.run_id and step_slug = complete_task.step_slug
     and task_index = complete_task.task_index
  returning * into v_task;
  perform pgmq.archive(v_task.flow_slug, v_task.message_id);

  perform pgflow._count_down_step(complete_task.run_id, complete_task.step_slug,
    v_step.step_type, 1, v_output);

  return query select v_task.*;
end;
$$;

create function pgflow.fail_task(run_id uuid, step_slug text, task_index int, error_message text)
returns setof pgflow.step_tasks
language plpgsql
set search_path = pg_catalog, pg_temp
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
       set status = 'queued', queued_at = now(), error_message = fail_task.error_message
     where run_id = fail_task.run_id and step_slug = fail_task.step_slug and task_index = fail_task.task_index
    returning * into v_task;
    -- The message normally still exists (hidden); if it was removed, send a new one.
    perform 1 from pgmq.set_vt(v_task.flow_slug, v_task.message_id, v_delay);
    if not found then
      update pgflow.step_tasks
         set message_id = (
               select m.msg_id from pgmq.send(v_task.flow_slug,
                 jsonb_build_object('flow_slug', v_task.flow_slug, 'run_id', v_task.run_id,
                                    'step_slug', v_task.step_slug, 'task_index', v_task.task_index),
                 v_delay) as m(msg_id))
       where run_id = fail_task.run_id and step_slug = fail_task.step_slug and task_index = fail_task.task_index
      returning * into v_task;
    end if;
    return query select v_task.*;
    return;
  end if;

  update pgflow.step_tasks
     set status = 'failed', failed_at = now(), error_message = fail_task.error_message
   where run_id = fail_task.run_id and step_slug = fail_task.step_slug and task_index = fail_task.task_index
  returning * into v_task;
  perform pgmq.archive(v_task.flow_slug, v_task.message_id);
  perform pgflow._fail_run(fail_task.run_id, fail_task.step_slug, fail_task.error_message);
  return query select v_task.*;
end;
$$;
