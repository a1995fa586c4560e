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
