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

revoke all on function pgflow.register_worker(uuid, text, text) from public;

revoke all on function pgflow.worker_heartbeat(uuid) from public;

revoke all on function pgflow.deprecate_workers(text) from public;

revoke all on function pgflow._get_flow_shape(text) from public;

revoke all on function pgflow._validate_flow_shape(text, jsonb) from public;

revoke all on function pgflow._check_shape_option(text, text, text, jsonb) from public;

revoke all on function pgflow._compare_flow_shapes(jsonb, jsonb) from public;

revoke all on function pgflow._create_flow_from_shape(text, jsonb) from public;

revoke all on function pgflow.delete_flow_and_data(text) from public;

revoke all on function pgflow.ensure_flow_compiled(text, jsonb, boolean) from public;

revoke all on function pgflow.track_worker_function(text) from public;

revoke all on function pgflow._vault_secret(text) from public;

revoke all on function pgflow.is_local() from public;

revoke all on function pgflow.ensure_workers(interval) from public;

revoke all on function pgflow.complete_task_and_claim(uuid, text, int, jsonb, uuid, int, int) from public;

revoke all on function pgflow.complete_tasks(uuid[], text[], int[], jsonb[]) from public;

revoke all on function pgflow.setup_ensure_workers_cron(text) from public;

revoke all on function pgflow.cleanup_ensure_workers_logs(int) from public;

revoke all on function pgflow.prune_finished_data(interval) from public;
