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
