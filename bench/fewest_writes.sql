-- The fewest writes a run needs on the engine's own tables and pgmq queue: the rows, messages
-- and notifications the engine leaves, and nothing else (no argument or flow checks, no row
-- locks, no step options or retries, no wake-up bookkeeping). Floors for the benchmark, not an
-- engine (floors.ts). `start` serves any flow whose steps are single steps with one root; the
-- other functions drive a diamond run (a -> b, a -> c, b + c -> d) of flow 'floor_diamond' as five
-- statements like the engine's: start, claim a, report a claiming b and c, report b and c
-- claiming d, report d. Installed into a throwaway database where those flows exist, so
-- pgflow.runs' foreign keys and the flows' queues do.

create schema bench_fewest_writes;

-- A run of p_flow: the run, every step's state (the root started, the others waiting), the
-- root's message (through the engine's compiled sender) and task, and its two events: sent with
-- pg_notify ('notify') or realtime.send ('realtime'), or not at all ('none').
create function bench_fewest_writes.start(p_flow text, p_input jsonb, p_events text) returns uuid
language plpgsql as $$
declare
  v_run uuid := gen_random_uuid();
  v_now timestamptz := now();
  v_steps int;
  v_root text;
  v_msg bigint;
  v_events jsonb[];
begin
  select count(*), (array_agg(s.step_slug) filter (where s.deps_count = 0))[1] into v_steps, v_root
  from pgflow.steps s where s.flow_slug = p_flow;
  insert into pgflow.runs (run_id, flow_slug, input, remaining_steps, started_at)
  values (v_run, p_flow, p_input, v_steps, v_now);
  insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, created_at,
                                  initial_tasks, status, started_at, remaining_tasks)
  select p_flow, v_run, s.step_slug, s.deps_count, v_now, 1,
         case when s.step_slug = v_root then 'started' else 'created' end,
         case when s.step_slug = v_root then v_now end,
         case when s.step_slug = v_root then 1 end
  from pgflow.steps s where s.flow_slug = p_flow;
  select m into v_msg
  from pgflow._queue_send(p_flow, array[jsonb_build_object('flow_slug', p_flow, 'run_id', v_run,
                                                           'step_slug', v_root, 'task_index', 0)], 0) m;
  insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at)
  values (p_flow, v_run, v_root, 0, v_msg, v_now);
  v_events := array[jsonb_build_object('event', 'run:started', 'run_id', v_run),
                    jsonb_build_object('event', 'step:' || v_root || ':started', 'run_id', v_run)];
  if p_events = 'notify' then
    perform pg_notify('pgflow:queue:' || p_flow, '');
    perform pg_notify('pgflow:run:' || v_run, e.body::text) from unnest(v_events) e(body);
  elsif p_events = 'realtime' then
    perform realtime.send(e.body, e.body->>'event', 'pgflow:run:' || v_run, false)
    from unnest(v_events) e(body);
  end if;
  return v_run;
end $$;

-- The oldest visible message, hidden for 30 s, and its task started: the run's id.
create function bench_fewest_writes.claim(p_worker uuid) returns uuid
language plpgsql as $$
declare
  v_msg bigint;
  v_run uuid;
begin
  update pgmq.q_floor_diamond q set vt = clock_timestamp() + interval '30 s', read_ct = read_ct + 1
  where q.msg_id = (select m.msg_id from pgmq.q_floor_diamond m where m.vt <= clock_timestamp()
                    order by m.msg_id limit 1 for update skip locked)
  returning q.msg_id into v_msg;
  update pgflow.step_tasks t set status = 'started', started_at = now(), attempts_count = 1,
         last_worker_id = p_worker
  where t.flow_slug = 'floor_diamond' and t.message_id = v_msg
  returning t.run_id into v_run;
  -- The task's input, as a worker receives it.
  perform jsonb_build_object('run', r.input) from pgflow.runs r where r.run_id = v_run;
  return v_run;
end $$;

-- Completes one level's tasks of run p_run; starts p_next's steps with their tasks already
-- claimed by p_worker and returns their inputs, or (p_next null: the level's steps are the
-- leaves) completes the run. Events: the level's steps completed, then p_next's started or the
-- run completed.
create function bench_fewest_writes.report(p_run uuid, p_steps text[], p_outputs jsonb[],
                                           p_next text[], p_worker uuid) returns jsonb
language plpgsql as $$
declare
  v_now timestamptz := now();
  v_done bigint[];
  v_sent bigint[];
  v_claimed jsonb;
begin
  with done as (
    update pgflow.step_tasks t set status = 'completed', completed_at = v_now, output = o.output
    from unnest(p_steps, p_outputs) o(step_slug, output)
    where t.run_id = p_run and t.step_slug = o.step_slug and t.task_index = 0
    returning t.message_id)
  select array_agg(message_id) into v_done from done;
  with archived as (delete from pgmq.q_floor_diamond q where q.msg_id = any(v_done) returning q.*)
  insert into pgmq.a_floor_diamond (msg_id, read_ct, enqueued_at, vt, message)
  select msg_id, read_ct, enqueued_at, vt, message from archived;
  update pgflow.step_states ss set status = 'completed', completed_at = v_now, remaining_tasks = 0
  where ss.run_id = p_run and ss.step_slug = any(p_steps);
  update pgflow.runs r
     set remaining_steps = r.remaining_steps - cardinality(p_steps),
         status = case when r.remaining_steps = cardinality(p_steps) then 'completed' else r.status end,
         completed_at = case when r.remaining_steps = cardinality(p_steps) then v_now end,
         output = case when r.remaining_steps = cardinality(p_steps) then (
                    select jsonb_object_agg(t.step_slug, t.output) from pgflow.step_tasks t
                    where t.run_id = p_run and t.step_slug = any(p_steps)) end
   where r.run_id = p_run;

  if p_next is not null then
    update pgflow.step_states ss set remaining_deps = 0, status = 'started', started_at = v_now,
           remaining_tasks = 1
    where ss.run_id = p_run and ss.step_slug = any(p_next);
    with sent as (
      insert into pgmq.q_floor_diamond (vt, message, read_ct)
      select clock_timestamp() + interval '30 s',
             jsonb_build_object('flow_slug', 'floor_diamond', 'run_id', p_run,
                                'step_slug', n.step_slug, 'task_index', 0), 1
      from unnest(p_next) with ordinality n(step_slug, ord)
      order by n.ord
      returning msg_id)
    select array_agg(msg_id order by msg_id) into v_sent from sent;
    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at,
                                   status, started_at, attempts_count, last_worker_id)
    select 'floor_diamond', p_run, n.step_slug, 0, n.msg_id, v_now, 'started', v_now, 1, p_worker
    from unnest(p_next, v_sent) n(step_slug, msg_id);
    select jsonb_agg(jsonb_build_object('step_slug', n.step_slug,
             'input', jsonb_build_object('run', r.input) || (
               select jsonb_object_agg(t.step_slug, t.output) from pgflow.step_tasks t
               where t.run_id = p_run and t.step_slug = any(p_steps))))
      into v_claimed
    from unnest(p_next) n(step_slug)
    cross join pgflow.runs r
    where r.run_id = p_run;
  end if;

  perform pg_notify('pgflow:run:' || p_run, e.body::text)
  from unnest(array(
    select jsonb_build_object('event', 'step:' || s || ':completed', 'run_id', p_run)
    from unnest(p_steps) s
    union all
    select jsonb_build_object('event', 'step:' || s || ':started', 'run_id', p_run)
    from unnest(p_next) s
    union all
    select jsonb_build_object('event', 'run:completed', 'run_id', p_run) where p_next is null)) e(body);
  return v_claimed;
end $$;
