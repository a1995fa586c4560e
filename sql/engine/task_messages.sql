-- The message a task's pgmq message carries (pgflow's format, which pgflow's
-- workers read too): which flow, run, step and task it is for. PL/pgSQL, not
-- SQL: a SQL function with a SET clause is planned again on every call (one
-- call per task: 18 us against 3 us).
create or replace function pgflow._task_message(flow_slug text, run_id uuid, step_slug text, task_index int)
returns jsonb
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return jsonb_build_object('flow_slug', _task_message.flow_slug, 'run_id', _task_message.run_id,
                            'step_slug', _task_message.step_slug, 'task_index', _task_message.task_index);
end;
$$;
