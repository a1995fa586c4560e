-- Starting runs: start_flow and start_flow_with_states.

-- start_flow runs with its owner's rights so a client role needs only EXECUTE
-- on it (see README, "Grants"), not write access to the tables and queues.
create or replace function pgflow.start_flow(flow_slug text, input jsonb, run_id uuid default null)
returns setof pgflow.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('start_flow(%L)', start_flow.flow_slug);
  v_run pgflow.runs;
  v_steps int;
  v_root_map text;
  v_input_length int;
begin
  perform 1 from pgflow.flows where flow_slug = start_flow.flow_slug;
  if not found then
    perform pgflow._no_such(format('%s: flow %s does not exist', v_what,
      coalesce(quote_literal(start_flow.flow_slug), 'NULL')));
  end if;
  if start_flow.input is null then
    perform pgflow._raise_invalid(format(
      '%s: input must not be SQL NULL; pass ''null''::jsonb for a JSON null', v_what));
  end if;
  select count(*) into v_steps from pgflow.steps where flow_slug = start_flow.flow_slug;
  if v_steps = 0 then
    perform pgflow._raise_invalid(format('%s: the flow has no steps; add steps with pgflow.add_step', v_what));
  end if;
  select step_slug into v_root_map from pgflow.steps
  where flow_slug = start_flow.flow_slug and step_type = 'map' and deps_count = 0
  order by step_index limit 1;
  if v_root_map is not null and jsonb_typeof(start_flow.input) <> 'array' then
    perform pgflow._raise_invalid(format(
      '%s: root map step %L maps over the flow input, which must be a JSON array; got %s',
      v_what, v_root_map, jsonb_typeof(start_flow.input)));
  end if;
  -- Computed outside SQL: the planner may fold jsonb_array_length of a
  -- parameter even in a CASE branch that would not be taken.
  if jsonb_typeof(start_flow.input) = 'array' then
    v_input_length := jsonb_array_length(start_flow.input);
  end if;

  begin
    insert into pgflow.runs (run_id, flow_slug, input, remaining_steps, started_at)
    values (coalesce(start_flow.run_id, gen_random_uuid()), start_flow.flow_slug, start_flow.input, v_steps,
            pgflow.now())
    returning * into v_run;
  exception when unique_violation then
    perform pgflow._raise_invalid(format('%s: run %s already exists', v_what, start_flow.run_id));
  end;

  insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, created_at, initial_tasks)
  select s.flow_slug, v_run.run_id, s.step_slug, s.deps_count, v_run.started_at,
         case
           when s.step_type = 'single' then 1
           when s.deps_count = 0 then v_input_length
         end
  from pgflow.steps s
  where s.flow_slug = start_flow.flow_slug;

  perform pgflow._emit_run(v_run.run_id, 'started',
    jsonb_build_object('flow_slug', v_run.flow_slug, 'input', v_run.input,
                       'remaining_steps', v_run.remaining_steps, 'started_at', v_run.started_at));
  perform pgflow.start_ready_steps(v_run.run_id);
  perform pgflow.maybe_complete_run(v_run.run_id);

  return query select * from pgflow.runs where run_id = v_run.run_id;
end;
$$;

create or replace function pgflow.start_flow_with_states(flow_slug text, input jsonb, run_id uuid default null)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_run_id uuid;
begin
  select r.run_id into v_run_id
  from pgflow.start_flow(start_flow_with_states.flow_slug, start_flow_with_states.input,
                         start_flow_with_states.run_id) r;
  return pgflow.get_run_with_states(v_run_id);
end;
$$;
