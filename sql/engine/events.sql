-- Realtime events: every state change is announced on topic pgflow:run:<run_id>.

-- Code edgeflow calls outside its own schema (Supabase's realtime.send,
-- pg_net, Vault) runs with the rights of whoever changes state: the worker
-- (the database owner) or a SECURITY DEFINER function. On a server without
-- those components, a role with CREATE on the database could plant them, so
-- such an object is used only when it and its schema belong to a trusted role
-- (_trusted_owners):
-- a superuser (Supabase's supabase_admin owns realtime, net and vault), or the
-- owner of schema pgflow (whoever installed edgeflow).
create or replace function pgflow._trusted_owners(p_owner oid, p_schema_owner oid)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
  -- One query: every event asks (through _trusted_function). pg_roles (a view
  -- over two more catalogs) is read by key, and only for an owner that is not
  -- the owner of schema pgflow.
  return exists (
    select 1 from pg_catalog.pg_namespace s
    where s.nspname = 'pgflow'
      and (p_owner = s.nspowner
           or (select r.rolsuper from pg_catalog.pg_roles r where r.oid = p_owner))
      and (p_schema_owner = s.nspowner
           or (select r.rolsuper from pg_catalog.pg_roles r where r.oid = p_schema_owner)));
end;
$$;

-- The function with this signature, or NULL when it is missing or it or its
-- schema is owned by an untrusted role.
create or replace function pgflow._trusted_function(p_signature text)
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
  where p.oid = v_function and pgflow._trusted_owners(p.proowner, n.nspowner);
  return case when found then v_function end;
end;
$$;

-- The same for a table or view.
create or replace function pgflow._trusted_relation(p_name text)
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
  where c.oid = v_relation and pgflow._trusted_owners(c.relowner, n.nspowner);
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
create or replace function pgflow._emit(run_id uuid, event text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_topic text := 'pgflow:run:' || run_id::text;
  v_body jsonb := payload || jsonb_build_object('event', event);
begin
  if pgflow._trusted_function('realtime.send(jsonb,text,text,boolean)') is not null then
    -- A static call (planned once per session, replanned if the function
    -- changes) rather than EXECUTE, which parses and plans on every event.
    -- The argument types match the checked signature exactly, so this
    -- resolves to the function just checked.
    perform realtime.send(v_body, event, v_topic, false);
    return;
  end if;
  perform pgflow._notify_event(v_topic, v_body);
end;
$$;

-- The pg_notify form of an event (no realtime.send): its body without inputs,
-- outputs or error messages, on a channel named like the topic.
create or replace function pgflow._notify_event(topic text, body jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_notify(_notify_event.topic, (
    select jsonb_object_agg(e.key, e.value)
    from jsonb_each(_notify_event.body) e
    where e.key in ('event', 'event_type', 'run_id', 'flow_slug', 'step_slug', 'status',
                    'failed_step', 'started_at', 'completed_at', 'failed_at', 'cancelled_at',
                    'skip_reason', 'skipped_at',
                    'restart_of_run_id', 'restarted_as'))::text);
end;
$$;

-- _emit for many events, in array order, with one trust check of
-- realtime.send for the batch: a set-based caller (start_flows) emits
-- thousands in one call, and the check costs about as much as the send.
create or replace function pgflow._emit_each(run_ids uuid[], events text[], payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_realtime boolean :=
    pgflow._trusted_function('realtime.send(jsonb,text,text,boolean)') is not null;
begin
  -- A loop of simple statements rather than one query over unnest(): a query
  -- with array parameters is planned again on every call.
  for i in 1 .. coalesce(cardinality(_emit_each.run_ids), 0) loop
    if v_realtime then
      -- As in _emit: the types match the checked signature exactly.
      perform realtime.send(_emit_each.payloads[i] || jsonb_build_object('event', _emit_each.events[i]),
                            _emit_each.events[i], 'pgflow:run:' || _emit_each.run_ids[i]::text, false);
    else
      -- Straight to the pg_notify form: _emit would check realtime.send again.
      perform pgflow._notify_event('pgflow:run:' || _emit_each.run_ids[i]::text,
        _emit_each.payloads[i] || jsonb_build_object('event', _emit_each.events[i]));
    end if;
  end loop;
end;
$$;

-- Helpers on the hot path are PL/pgSQL rather than SQL functions: a SQL
-- function with a SET clause is re-planned on every call, a PL/pgSQL one
-- keeps its plans for the session. A single event goes straight to _emit
-- (each level of calls costs), many through _emit_each.
create or replace function pgflow._emit_step(run_id uuid, step_slug text, status text, payload jsonb)
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

-- step:<status> events of many (run, step) pairs, in array order. The body is
-- _emit_step's, written out in both: a shared helper costs every event a call.
-- None costs nothing; one goes to _emit_step: _emit_each's batch check and loop
-- cost more.
create or replace function pgflow._emit_steps(run_ids uuid[], step_slugs text[], status text, payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_events text[] := '{}';
  v_payloads jsonb[] := '{}';
begin
  if coalesce(cardinality(_emit_steps.run_ids), 0) = 0 then
    return;
  end if;
  if cardinality(_emit_steps.run_ids) = 1 then
    perform pgflow._emit_step(_emit_steps.run_ids[1], _emit_steps.step_slugs[1], _emit_steps.status,
      _emit_steps.payloads[1]);
    return;
  end if;
  for i in 1 .. cardinality(_emit_steps.run_ids) loop
    v_events[i] := 'step:' || _emit_steps.step_slugs[i] || ':' || _emit_steps.status;
    v_payloads[i] := jsonb_build_object('event_type', 'step:' || _emit_steps.status,
                       'run_id', _emit_steps.run_ids[i], 'step_slug', _emit_steps.step_slugs[i],
                       'status', _emit_steps.status) || _emit_steps.payloads[i];
  end loop;
  perform pgflow._emit_each(_emit_steps.run_ids, v_events, v_payloads);
end;
$$;

create or replace function pgflow._emit_run(run_id uuid, status text, payload jsonb)
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

-- run:<status> events of many runs, in array order (the body is _emit_run's;
-- one event goes to _emit_run, as in _emit_steps).
create or replace function pgflow._emit_runs(run_ids uuid[], status text, payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_events text[] := '{}';
  v_payloads jsonb[] := '{}';
begin
  if coalesce(cardinality(_emit_runs.run_ids), 0) = 0 then
    return;
  end if;
  if cardinality(_emit_runs.run_ids) = 1 then
    perform pgflow._emit_run(_emit_runs.run_ids[1], _emit_runs.status, _emit_runs.payloads[1]);
    return;
  end if;
  for i in 1 .. cardinality(_emit_runs.run_ids) loop
    v_events[i] := 'run:' || _emit_runs.status;
    v_payloads[i] := jsonb_build_object('event_type', 'run:' || _emit_runs.status,
                       'run_id', _emit_runs.run_ids[i], 'status', _emit_runs.status)
                     || _emit_runs.payloads[i];
  end loop;
  perform pgflow._emit_each(_emit_runs.run_ids, v_events, v_payloads);
end;
$$;
