-- Maintenance: retention of finished runs, archived messages and old workers.

-- Retention: deletes finished runs (with their step states and tasks),
-- archived queue messages and stopped (or long silent) workers older than the
-- interval; returns how many of each went.
create or replace function pgflow.prune_finished_data(retention_interval interval)
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
    raise exception 'prune_finished_data: retention_interval must be a non-negative interval, got %',
      coalesce(retention_interval::text, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  v_cutoff := pgflow.now() - retention_interval;

  select coalesce(array_agg(r.run_id), '{}') into v_runs
  from pgflow.runs r
  where r.status <> 'started' and coalesce(r.completed_at, r.failed_at, r.cancelled_at) < v_cutoff;

  delete from pgflow.step_tasks where run_id = any(v_runs);
  get diagnostics v_tasks = row_count;
  delete from pgflow.step_states where run_id = any(v_runs);
  get diagnostics v_states = row_count;
  delete from pgflow.runs where run_id = any(v_runs);

  for v_flow in select flow_slug from pgflow.flows loop
    if to_regclass(format('pgmq.%I', 'a_' || lower(v_flow))) is not null then
      -- archived_at is on pgmq's clock, the cutoff on the engine's.
      execute format('delete from pgmq.%I where archived_at < $1', 'a_' || lower(v_flow))
        using pgflow._queue_time(v_cutoff);
      get diagnostics v_count = row_count;
      v_messages := v_messages + v_count;
    end if;
  end loop;

  -- A worker row goes when the worker stopped before the cutoff, or fell silent
  -- before it and at least an hour ago: a live worker is never pruned, even with
  -- a short interval.
  delete from pgflow.workers
  where stopped_at < v_cutoff
     or (stopped_at is null and last_heartbeat_at < least(v_cutoff, pgflow.now() - interval '1 hour'));
  get diagnostics v_workers = row_count;

  return jsonb_build_object(
    'runs', cardinality(v_runs), 'step_states', v_states, 'step_tasks', v_tasks,
    'archived_messages', v_messages, 'workers', v_workers);
end;
$$;

-- pgflow's documented signature (returns nothing). pgflow's users created it
-- in their own migrations from pgflow's docs; with the same signature and
-- return type, their CREATE OR REPLACE keeps working after the switch.
create or replace function pgflow.prune_data_older_than(retention_interval interval)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgflow.prune_finished_data(prune_data_older_than.retention_interval);
end;
$$;
