-- edgeflow SQL core, part 7: privileges.
-- Nothing in schema pgflow is reachable by a role that was not granted it.
-- README.md ("Grants") lists what a client role needs to start and watch runs.

revoke all on schema pgflow from public;
revoke all on all tables in schema pgflow from public;
revoke all on all sequences in schema pgflow from public;
revoke all on all functions in schema pgflow from public;
-- Functions created later by the same role are not executable by PUBLIC either.
alter default privileges in schema pgflow revoke execute on functions from public;

-- Supabase's API roles get nothing unless the project grants it.
do $$
declare
  v_role text;
begin
  foreach v_role in array array['anon', 'authenticated'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = v_role) then
      execute format('revoke all on schema pgflow from %I', v_role);
      execute format('revoke all on all tables in schema pgflow from %I', v_role);
      execute format('revoke all on all functions in schema pgflow from %I', v_role);
    end if;
  end loop;
end
$$;
