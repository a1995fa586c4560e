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
