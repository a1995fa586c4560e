-- edgeflow SQL core, part 6: reading runs, recovery, retention, worker bookkeeping.

create function pgflow.get_run_with_states(run_id uuid)
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

create function pgflow.start_flow_with_states(flow_slug text, input jsonb, run_id uuid default null)
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

-- start_flow runs with its owner's rights so a client role needs only EXECUTE
-- on it (see README, "Grants"), not write access to the tables and queues.
alter function pgflow.start_flow(text, jsonb, uuid) security definer;

-- Recovery: a task still 'started' past its step's own timeout (plus the
-- 2 s margin start_tasks gives its message) has lost its worker. Each such
-- attempt counts as failed: retried with backoff, or failing the run when
-- attempts are exhausted. Workers call this periodically; pg_cron can too.
create function pgflow.requeue_stalled_tasks(flow_slug text default null)
returns int
language sql
set search_path = pg_catalog, pg_temp
as $$
  select cardinality(pgflow._fail_stalled_tasks(requeue_stalled_tasks.flow_slug, null));
$$;

-- Retention: deletes finished runs (with their step states and tasks),
-- archived queue messages and stopped (or long silent) workers older than the interval.
create function pgflow.prune_data_older_than(retention_interval interval)
returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_cutoff timestamptz;
  v_runs uuid[];
  v_tasks int;
  v_states int;
  v_messages bigint := 0;
  v_count bigint;
  v_workers int;
  v_flow text;
begin
  if retention_interval is null or retention_interval < interval '0' then
    raise exception 'prune_data_older_than: retention_interval must be a non-negative interval, got %',
      coalesce(retention_interval::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  v_cutoff := now() - retention_interval;

  select coalesce(array_agg(r.run_id), '{}') into v_runs
  from pgflow.runs r
  where r.status <> 'started' and coalesce(r.completed_at, r.failed_at) < v_cutoff;

  delete from pgflow.step_tasks where run_id = any(v_runs);
  get diagnostics v_tasks = row_count;
  delete from pgflow.step_states where run_id = any(v_runs);
  get diagnostics v_states = row_count;
  delete from pgflow.runs where run_id = any(v_runs);

  for v_flow in select flow_slug from pgflow.flows loop
    if to_regclass(format('pgmq.%I', 'a_' || lower(v_flow))) is not null then
      execute format('delete from pgmq.%I where archived_at < $1', 'a_' || lower(v_flow)) using v_cutoff;
      get diagnostics v_count = row_count;
      v_messages := v_messages + v_count;
    end if;
  end loop;

  -- A worker row goes when the worker stopped before the cutoff, or fell silent
  -- before it and at least an hour ago: a live worker is never pruned, even with
  -- a short interval.
  delete from pgflow.workers
  where stopped_at < v_cutoff
     or (stopped_at is null and last_heartbeat_at < least(v_cutoff, now() - interval '1 hour'));
  get diagnostics v_workers = row_count;

  return jsonb_build_object(
    'runs', cardinality(v_runs), 'step_states', v_states, 'step_tasks', v_tasks,
    'archived_messages', v_messages, 'workers', v_workers);
end;
$$;

-- Marks a worker stopped (it shut down cleanly); unknown ids are an error.
create function pgflow.mark_worker_stopped(worker_id uuid)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  update pgflow.workers set stopped_at = coalesce(stopped_at, now())
  where worker_id = mark_worker_stopped.worker_id;
  if not found then
    perform pgflow._no_such(format('mark_worker_stopped: worker %s is not registered',
      coalesce(mark_worker_stopped.worker_id::text, 'NULL')));
  end if;
end;
$$;
