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
-- Events of one transaction arrive in order. One event is _emit_each of one.
create or replace function pgflow._emit(run_id uuid, event text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit_each(array[_emit.run_id], array[_emit.event], array[_emit.payload]);
end;
$$;

-- Events in array order, with one trust check of realtime.send for them all:
-- a set-based caller (start_flows) emits thousands in one call, and the check
-- costs about as much as a send. An event is named run:<status> or
-- step:<slug>:<status> (slugs hold no colon); its body is {event, event_type
-- (run:<status> or step:<status>), run_id, status, step_slug for a step}
-- followed by its payload, whose keys win (run:resumed says status 'started').
create or replace function pgflow._emit_each(run_ids uuid[], events text[], payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
-- The pg_notify statement below takes arrays: one generic plan for it, made
-- once per session, whatever their lengths.
set plan_cache_mode = force_generic_plan
as $$
declare
  v_realtime boolean;
  v_event text;
  v_body jsonb;
  v_bodies jsonb[] := '{}';
begin
  if coalesce(cardinality(_emit_each.run_ids), 0) = 0 then
    return;
  end if;
  v_realtime := pgflow._trusted_function('realtime.send(jsonb,text,text,boolean)') is not null;
  -- The bodies in a loop of simple expressions; realtime.send, which runs a
  -- subtransaction per call, gains nothing from one statement.
  for i in 1 .. coalesce(cardinality(_emit_each.run_ids), 0) loop
    v_event := _emit_each.events[i];
    v_body := case when split_part(v_event, ':', 1) = 'step'
        then jsonb_build_object('event_type', 'step:' || split_part(v_event, ':', 3),
               'run_id', _emit_each.run_ids[i], 'step_slug', split_part(v_event, ':', 2),
               'status', split_part(v_event, ':', 3))
        else jsonb_build_object('event_type', v_event, 'run_id', _emit_each.run_ids[i],
               'status', split_part(v_event, ':', 2))
      end || _emit_each.payloads[i] || jsonb_build_object('event', v_event);
    if v_realtime then
      -- A static call (planned once per session, replanned if the function
      -- changes) rather than EXECUTE, which parses and plans on every event.
      -- The argument types match the checked signature exactly, so this
      -- resolves to the function just checked.
      perform realtime.send(v_body, v_event, 'pgflow:run:' || _emit_each.run_ids[i]::text, false);
    else
      v_bodies[i] := v_body;
    end if;
  end loop;
  if not v_realtime then
    -- The pg_notify form, all in one statement, in array order: the body
    -- without inputs, outputs or error messages, on a channel named like the topic.
    perform pg_notify('pgflow:run:' || u.run_id::text, (
      select jsonb_object_agg(e.key, e.value)
      from jsonb_each(u.body) e
      where e.key in ('event', 'event_type', 'run_id', 'flow_slug', 'step_slug', 'status',
                      'failed_step', 'started_at', 'completed_at', 'failed_at', 'cancelled_at',
                      'skip_reason', 'skipped_at',
                      'restart_of_run_id', 'restarted_as'))::text)
    from unnest(_emit_each.run_ids, v_bodies) as u(run_id, body);
  end if;
end;
$$;

-- Helpers on the hot path are PL/pgSQL rather than SQL functions: a SQL
-- function with a SET clause is re-planned on every call, a PL/pgSQL one
-- keeps its plans for the session.
create or replace function pgflow._emit_step(run_id uuid, step_slug text, status text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit(run_id, 'step:' || step_slug || ':' || status, payload);
end;
$$;

-- step:<status> events of many (run, step) pairs, in array order.
create or replace function pgflow._emit_steps(run_ids uuid[], step_slugs text[], status text, payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_events text[] := '{}';
begin
  for i in 1 .. coalesce(cardinality(_emit_steps.run_ids), 0) loop
    v_events[i] := 'step:' || _emit_steps.step_slugs[i] || ':' || _emit_steps.status;
  end loop;
  perform pgflow._emit_each(_emit_steps.run_ids, v_events, _emit_steps.payloads);
end;
$$;

create or replace function pgflow._emit_run(run_id uuid, status text, payload jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit(run_id, 'run:' || status, payload);
end;
$$;

-- run:<status> events of many runs, in array order.
create or replace function pgflow._emit_runs(run_ids uuid[], status text, payloads jsonb[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow._emit_each(_emit_runs.run_ids,
    array_fill('run:' || _emit_runs.status, array[coalesce(cardinality(_emit_runs.run_ids), 0)]),
    _emit_runs.payloads);
end;
$$;
