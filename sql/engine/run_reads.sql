-- Reading a run: its row and every step state, for clients (SECURITY DEFINER,
-- granted like start_flow).
create or replace function pgflow.get_run_with_states(run_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_result jsonb;
begin
  select jsonb_build_object(
           'run', to_jsonb(r),
           'steps', coalesce((
             select jsonb_agg(to_jsonb(ss) order by s.step_index)
             from pgflow.step_states ss
             join pgflow.steps s on s.flow_slug = ss.flow_slug and s.step_slug = ss.step_slug
             where ss.run_id = r.run_id), '[]'::jsonb))
    into v_result
  from pgflow.runs r
  where r.run_id = get_run_with_states.run_id;
  if v_result is null then
    perform pgflow._no_such(format('get_run_with_states: run %s does not exist',
      coalesce(get_run_with_states.run_id::text, 'NULL')));
  end if;
  return v_result;
end;
$$;
