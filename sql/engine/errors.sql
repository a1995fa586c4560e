-- Errors every engine function raises the same way: invalid input (22023)
-- and missing objects (P0002), with messages that name the call.
create or replace function pgflow._raise_invalid(message text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', message using errcode = 'invalid_parameter_value';
end;
$$;

create or replace function pgflow._no_such(what text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', what using errcode = 'no_data_found';
end;
$$;

-- The flow exists, else no_data_found naming the call (`what`) and the slug.
create or replace function pgflow._require_flow(what text, flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform 1 from pgflow.flows f where f.flow_slug = _require_flow.flow_slug;
  if not found then
    perform pgflow._no_such(format('%s: flow %s does not exist', what,
      coalesce(quote_literal(_require_flow.flow_slug), 'NULL')));
  end if;
end;
$$;

-- A call that is valid but not in the run's current state (55000), e.g.
-- resuming a run that is still running.
create or replace function pgflow._raise_state(message text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception '%', message using errcode = 'object_not_in_prerequisite_state';
end;
$$;
