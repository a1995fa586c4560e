-- edgeflow SQL core, part 3: realtime events and small helpers used by the state machine.

-- Code edgeflow calls outside its own schema (Supabase's realtime.send,
-- pg_net, Vault) runs with the rights of whoever changes state: the worker
-- (the database owner) or a SECURITY DEFINER function. On a server without
-- those components, a role with CREATE on the database could plant them, so
-- such an object is used only when it and its schema belong to a trusted role:
-- a superuser (Supabase's supabase_admin owns realtime, net and vault), or the
-- owner of schema pgflow (whoever installed edgeflow).
create function pgflow._is_trusted_role(p_role oid)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
  return p_role = (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'pgflow')
    or coalesce((select r.rolsuper from pg_catalog.pg_roles r where r.oid = p_role), false);
end;
$$;

-- The function with this signature, or NULL when it is missing or it or its
-- schema is owned by an untrusted role.
create function pgflow._trusted_function(p_signature text)
returns regprocedure
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_function regprocedure := pg_catalog.to_regprocedure(p_signature);
begin
  if v_function is null then
    return null;
  end if;
  perform 1 from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  where p.oid = v_function
    and pgflow._is_trusted_role(p.proowner) and pgflow._is_trusted_role(n.nspowner);
  return case when found then v_function end;
end;
$$;

-- The same for a table or view.
create function pgflow._trusted_relation(p_name text)
returns regclass
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_relation regclass := pg_catalog.to_regclass(p_name);
begin
  if v_relation is null then
    return null;
  end if;
  perform 1 from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.oid = v_relation
    and pgflow._is_trusted_role(c.relowner) and pgflow._is_trusted_role(n.nspowner);
  return case when found then v_relation end;
end;
$$;

-- Every state change of a run is broadcast on topic pgflow:run:<run_id>.
-- Supabase's realtime.send (owned by a trusted role) is used where it exists,
-- looked up per call so installing Realtime later needs no migration; its
-- authorization decides who receives the full payload. Elsewhere pg_notify
-- on a channel named like the topic, which any role may LISTEN to: those
-- notifications carry ids, slugs, statuses and timestamps only, never inputs,
-- outputs or error messages (read them with get_run_with_states).
-- Events of one transaction arrive in order.
create function pgflow._emit(run_id uuid, event text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_topic text := 'pgflow:run:' || run_id::text;
  v_body jsonb := payload || jsonb_build_object('event', event);
begin
  if pgflow._trusted_function('realtime.send(jsonb,text,text,boolean)') is not null then
    execute 'select realtime.send($1, $2, $3, false)' using v_body, event, v_topic;
    return;
  end if;
  perform pg_notify(v_topic, (
    select jsonb_object_agg(e.key, e.value)
    from jsonb_each(v_body) e
    where e.key in ('event', 'event_type', 'run_id', 'flow_slug', 'step_slug', 'status',
                    'failed_step', 'started_at', 'completed_at', 'failed_at'))::text);
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
-- largest visibility timeout pgmq accepts (int seconds). Both factors are
-- capped before multiplying, so no input overflows numeric or int.
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
  return least(floor(least(base_delay, 2147483647) * power(2::numeric, least(attempts_count, 64))), 2147483647)::int;
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
