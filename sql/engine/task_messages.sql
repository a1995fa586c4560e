-- The message a task's pgmq message carries (pgflow's format, which pgflow's
-- workers read too): which flow, run, step and task it is for.
create or replace function pgflow._task_message(flow_slug text, run_id uuid, step_slug text, task_index int)
returns jsonb
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object('flow_slug', flow_slug, 'run_id', run_id,
                            'step_slug', step_slug, 'task_index', task_index);
$$;
