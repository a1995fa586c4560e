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
      select coalesce(s.opt_timeout, f.opt_timeout) + {{TIMEOUT_MARGIN_SECONDS}}
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
  select array_agg(s.step_slug), array_agg(coalesce(s.opt_timeout, f.opt_timeout) + {{TIMEOUT_MARGIN_SECONDS}})
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
