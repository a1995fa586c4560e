-- edgeflow SQL core, part 3: realtime events and small helpers used by the state machine.

-- Every state change of a run is broadcast on topic pgflow:run:<run_id>.
-- Supabase's realtime.send is used where it exists (looked up per call, so
-- installing Realtime later needs no migration); elsewhere pg_notify on a
-- channel named like the topic. Events of one transaction arrive in order.
create function pgflow._emit(run_id uuid, event text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_topic text := 'pgflow:run:' || run_id::text;
  v_body jsonb := payload || jsonb_build_object('event', event);
  v_text text;
begin
  if to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null then
    execute 'select realtime.send($1, $2, $3, false)' using v_body, event, v_topic;
    return;
  end if;
  v_text := v_body::text;
  -- NOTIFY payloads are limited to 8000 bytes: large inputs/outputs are left out
  -- and the listener can read them with get_run_with_states.
  if octet_length(v_text) > 7900 then
    v_text := ((v_body - 'input' - 'output' - 'error_message')
      || jsonb_build_object('truncated', true))::text;
  end if;
  perform pg_notify(v_topic, v_text);
end;
$$;

-- Helpers on the hot path are PL/pgSQL rather than SQL functions: a SQL
-- function with a SET clause is re-planned on every call, a PL/pgSQL one
-- keeps its plans for the session.
create function pgflow._emit_step(run_id uuid, step_slug text, status text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit(
    run_id,
    'step:' || step_slug || ':' || status,
    jsonb_build_object('event_type', 'step:' || status, 'run_id', run_id,
      'step_slug', step_slug, 'status', status) || payload);
end;
$$;

create function pgflow._emit_run(run_id uuid, status text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit(
    run_id,
    'run:' || status,
    jsonb_build_object('event_type', 'run:' || status, 'run_id', run_id, 'status', status)
      || payload);
end;
$$;

-- Exponential backoff: base_delay * 2^attempts_count seconds, capped at the
-- largest visibility timeout pgmq accepts (int seconds).
create function pgflow.calculate_retry_delay(base_delay numeric, attempts_count int)
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
  return least(floor(base_delay * power(2::numeric, least(attempts_count, 64))), 2147483647)::int;
end;
$$;

-- Sets each message's visibility timeout (seconds from now) in one statement.
-- pgmq names a queue's table q_<lower-cased queue name>.
create function pgflow.set_vt_batch(queue_name text, msg_ids bigint[], vt_offsets int[])
returns setof pgmq.message_record
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if cardinality(msg_ids) is distinct from cardinality(vt_offsets) then
    raise exception 'set_vt_batch(%): msg_ids has % elements but vt_offsets has %',
      queue_name, coalesce(cardinality(msg_ids), 0), coalesce(cardinality(vt_offsets), 0)
      using errcode = 'invalid_parameter_value';
  end if;
  if array_position(vt_offsets, null) is not null then
    raise exception 'set_vt_batch(%): vt_offsets must not contain NULL', queue_name
      using errcode = 'invalid_parameter_value';
  end if;
  if to_regclass(format('pgmq.%I', 'q_' || lower(queue_name))) is null then
    raise exception 'set_vt_batch: queue % does not exist', coalesce(quote_literal(queue_name), 'NULL')
      using errcode = 'no_data_found';
  end if;
  if coalesce(cardinality(msg_ids), 0) = 0 then
    return;
  end if;
  return query execute format(
    'update pgmq.%I q
        set vt = clock_timestamp() + make_interval(secs => v.vt_offset)
       from unnest($1, $2) as v(msg_id, vt_offset)
      where q.msg_id = v.msg_id
  returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers',
    'q_' || lower(queue_name))
  using msg_ids, vt_offsets;
end;
$$;

-- The output a step hands to its dependents: a single step's task output, or
-- a map step's task outputs in task order (an empty map gives []).
create function pgflow._step_output(run_id uuid, step_slug text, step_type text)
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
