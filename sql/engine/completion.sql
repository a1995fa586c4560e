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
