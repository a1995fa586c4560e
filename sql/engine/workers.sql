-- Worker bookkeeping used by the edge worker: registration, heartbeats,
-- deprecation, stopping.

-- Marks a worker stopped (it shut down cleanly); unknown ids are an error.
create or replace function pgflow.mark_worker_stopped(worker_id uuid)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  update pgflow.workers set stopped_at = coalesce(stopped_at, pgflow.now())
  where worker_id = mark_worker_stopped.worker_id;
  if not found then
    perform pgflow._no_such(format('mark_worker_stopped: worker %s is not registered',
      coalesce(mark_worker_stopped.worker_id::text, 'NULL')));
  end if;
end;
$$;

-- Registers (or re-registers) a worker serving a flow's queue.
create or replace function pgflow.register_worker(worker_id uuid, queue_name text, function_name text)
returns pgflow.workers
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_worker pgflow.workers;
begin
  if register_worker.worker_id is null then
    perform pgflow._raise_invalid('register_worker: worker_id must not be NULL');
  end if;
  if coalesce(register_worker.queue_name, '') = '' or coalesce(register_worker.function_name, '') = '' then
    perform pgflow._raise_invalid(format(
      'register_worker(%s): queue_name and function_name must be non-empty', register_worker.worker_id));
  end if;
  insert into pgflow.workers (worker_id, queue_name, function_name, started_at, last_heartbeat_at)
  values (register_worker.worker_id, register_worker.queue_name, register_worker.function_name,
          pgflow.now(), pgflow.now())
  on conflict (worker_id) do update
    set queue_name = excluded.queue_name,
        function_name = excluded.function_name,
        last_heartbeat_at = pgflow.now(),
        stopped_at = null
  returning * into v_worker;
  return v_worker;
end;
$$;

-- Records a heartbeat; returns true when the worker was deprecated and should
-- stop taking work (a newer version is being deployed).
create or replace function pgflow.worker_heartbeat(worker_id uuid)
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_deprecated boolean;
begin
  update pgflow.workers set last_heartbeat_at = pgflow.clock_now()
  where worker_id = worker_heartbeat.worker_id
  returning deprecated_at is not null into v_deprecated;
  if not found then
    perform pgflow._no_such(format('worker_heartbeat: worker %s is not registered',
      coalesce(worker_heartbeat.worker_id::text, 'NULL')));
  end if;
  return v_deprecated;
end;
$$;

-- Deprecates the live workers of a function (or of every function when NULL):
-- they finish their in-flight tasks and stop. Returns how many were marked.
create or replace function pgflow.deprecate_workers(function_name text default null)
returns int
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_count int;
begin
  update pgflow.workers set deprecated_at = pgflow.now()
  where deprecated_at is null and stopped_at is null
    and (deprecate_workers.function_name is null or function_name = deprecate_workers.function_name);
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
