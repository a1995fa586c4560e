-- Keeping workers alive on Supabase.
--
-- An edge function instance lives at most its wall-clock limit (150 s free,
-- 400 s paid). pg_cron calls pgflow.ensure_workers() every few seconds; for
-- each tracked function with no live worker it asks pg_net to invoke the
-- function (debounced), which boots a new worker. Credentials come from
-- Supabase Vault: secret "edgeflow_functions_url" (e.g.
-- https://<ref>.supabase.co/functions/v1) and "edgeflow_service_role_key", or
-- pgflow's secrets ("supabase_project_id", "pgflow_auth_secret",
-- "supabase_service_role_key"), so a switched project needs no new ones.
-- Without pg_net the function still reports what it would invoke, so a local
-- runtime can do the calling (src/dev plays pg_net's part in tests).

-- Registers a function for keep-alive (idempotent): run once per worker function,
-- e.g. in the migration that deploys it (the demo does it at startup).
create or replace function pgflow.track_worker_function(function_name text)
returns pgflow.worker_functions
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_row pgflow.worker_functions;
begin
  if coalesce(track_worker_function.function_name, '') = '' then
    perform pgflow._raise_invalid('track_worker_function: function_name must be non-empty');
  end if;
  insert into pgflow.worker_functions (function_name)
  values (track_worker_function.function_name)
  on conflict (function_name) do update set updated_at = pgflow.now()
  returning * into v_row;
  return v_row;
end;
$$;

-- A secret from Supabase Vault, or NULL when Vault or the secret is absent.
create or replace function pgflow._vault_secret(p_name text)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_secret text;
begin
  if pgflow._trusted_relation('vault.decrypted_secrets') is null then
    return null;
  end if;
  execute 'select decrypted_secret from vault.decrypted_secrets where name = $1 limit 1'
    into v_secret using p_name;
  return v_secret;
end;
$$;

-- True when functions are served locally: the database has the local Supabase
-- stack's JWT secret (app.settings.jwt_secret equal to the Supabase CLI's
-- documented default, as pgflow checks), or edgeflow's
-- functions URL points at this machine. False when neither is set.
create or replace function pgflow.is_local()
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(nullif(current_setting('app.settings.jwt_secret', true), '')
                    = 'super-secret-jwt-token-with-at-least-32-characters-long', false)
      or coalesce(pgflow._vault_secret('edgeflow_functions_url')
                    ~ '^https?://(localhost|127\.0\.0\.1|host\.docker\.internal|kong)(:|/|$)', false);
$$;

-- Where tracked functions are served: Vault's edgeflow_functions_url, else
-- pgflow's supabase_project_id (https://<id>.supabase.co/functions/v1), else,
-- on a local stack, Supabase's local gateway. NULL when unknown.
create or replace function pgflow._functions_url()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(
    rtrim(nullif(pgflow._vault_secret('edgeflow_functions_url'), ''), '/'),
    'https://' || nullif(pgflow._vault_secret('supabase_project_id'), '') || '.supabase.co/functions/v1',
    case when pgflow.is_local() then 'http://kong:8000/functions/v1' end);
$$;

-- Pings tracked functions so each has a live worker (pgflow 0.10's API):
--   local stack (pgflow.is_local()): every enabled function, every call;
--   production: enabled functions with no live worker that were not pinged
--   within their debounce, and only with credentials (a functions URL and a
--   key: edgeflow_service_role_key, pgflow_auth_secret or
--   supabase_service_role_key in Vault); without them nothing is pinged.
-- A worker is live when it is neither stopped nor deprecated and sent a
-- heartbeat within heartbeat_timeout; a stale heartbeat counts as dead.
-- Without pg_net nothing can be sent: the functions due (production rules)
-- are returned with invoked = false, so a local runtime can do the calling
-- (src/dev/keep_alive.ts).
create or replace function pgflow.ensure_workers(heartbeat_timeout interval default '15 seconds')
returns table (function_name text, invoked boolean, request_id bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_has_net boolean := pgflow._trusted_function('net.http_post(text,jsonb,jsonb,jsonb,integer)') is not null;
  v_local boolean := pgflow.is_local();
  v_url text := pgflow._functions_url();
  v_key text := coalesce(nullif(pgflow._vault_secret('edgeflow_service_role_key'), ''),
                         nullif(pgflow._vault_secret('pgflow_auth_secret'), ''),
                         nullif(pgflow._vault_secret('supabase_service_role_key'), ''));
  v_function text;
  v_request bigint;
begin
  if heartbeat_timeout is null or heartbeat_timeout <= interval '0' then
    perform pgflow._raise_invalid(format(
      'ensure_workers: heartbeat_timeout must be a positive interval, got %s',
      coalesce(heartbeat_timeout::text, 'NULL')));
  end if;
  if v_has_net and (v_url is null or (not v_local and v_key is null)) then
    return;
  end if;
  for v_function in
    update pgflow.worker_functions wf
       set last_invoked_at = pgflow.now(), updated_at = pgflow.now()
     where wf.enabled
       and ((v_local and v_has_net)
         or ((wf.last_invoked_at is null or wf.last_invoked_at <= pgflow.now() - wf.debounce)
             and not exists (
               select 1 from pgflow.workers w
               where w.function_name = wf.function_name
                 and w.stopped_at is null and w.deprecated_at is null
                 and w.last_heartbeat_at > pgflow.now() - ensure_workers.heartbeat_timeout)))
    returning wf.function_name
  loop
    v_request := null;
    if v_has_net then
      execute 'select net.http_post(url => $1, body => $2, params => $3, headers => $4, timeout_milliseconds => $5)'
        into v_request
        using v_url || '/' || v_function,
              '{}'::jsonb,
              '{}'::jsonb,
              jsonb_build_object('Content-Type', 'application/json')
                || case when v_key is null or v_local then '{}'::jsonb
                        else jsonb_build_object('Authorization', 'Bearer ' || v_key) end,
              5000;
    end if;
    function_name := v_function;
    invoked := v_has_net;
    request_id := v_request;
    return next;
  end loop;
end;
$$;

-- The cron jobs of worker management: pgflow's names, so a database switched
-- from pgflow keeps its jobs, plus the one edgeflow schedules by itself.
create or replace function pgflow._keep_alive_job_names()
returns text[]
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select array['pgflow_ensure_workers', 'pgflow_cleanup_logs', 'edgeflow_ensure_workers'];
$$;

-- Whether a pg_cron job of this name exists (false without a trusted pg_cron).
create or replace function pgflow._cron_job_exists(p_name text)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_found boolean;
begin
  if pgflow._trusted_relation('cron.job') is null then
    return false;
  end if;
  execute 'select exists (select 1 from cron.job where jobname = $1)' into v_found using p_name;
  return v_found;
end;
$$;

-- pgflow 0.10's setup: schedules ensure_workers every cron_interval
-- (pg_cron syntax: '1 second' .. '59 seconds' or a cron expression) and the
-- log cleanup hourly, replacing earlier jobs of either name and edgeflow's own
-- default job. Returns what it scheduled.
create or replace function pgflow.setup_ensure_workers_cron(cron_interval text default '1 second')
returns text
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_name text;
  v_ensure bigint;
  v_cleanup bigint;
begin
  if pgflow._trusted_function('cron.schedule(text,text,text)') is null
     or pgflow._trusted_function('cron.unschedule(text)') is null then
    perform pgflow._raise_invalid(
      'setup_ensure_workers_cron: pg_cron is not installed (or not owned by a trusted role); enable pg_cron first');
  end if;
  if setup_ensure_workers_cron.cron_interval is null or btrim(setup_ensure_workers_cron.cron_interval) = '' then
    perform pgflow._raise_invalid('setup_ensure_workers_cron: cron_interval must be a pg_cron schedule, got NULL or empty');
  end if;
  foreach v_name in array pgflow._keep_alive_job_names() loop
    if pgflow._cron_job_exists(v_name) then
      execute 'select cron.unschedule($1)' using v_name;
    end if;
  end loop;
  execute 'select cron.schedule($1, $2, $3)' into v_ensure
    using 'pgflow_ensure_workers', setup_ensure_workers_cron.cron_interval, 'select pgflow.ensure_workers()';
  execute 'select cron.schedule($1, $2, $3)' into v_cleanup
    using 'pgflow_cleanup_logs', '0 * * * *', 'select pgflow.cleanup_ensure_workers_logs()';
  return format('scheduled pgflow_ensure_workers (every %s, job %s) and pgflow_cleanup_logs (hourly, job %s)',
    setup_ensure_workers_cron.cron_interval, v_ensure, v_cleanup);
end;
$$;

-- Deletes pg_cron's run logs of worker management's own jobs older than
-- retention_hours (other jobs' logs are left alone); returns how many went.
create or replace function pgflow.cleanup_ensure_workers_logs(retention_hours int default 24)
returns table (cron_deleted bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if cleanup_ensure_workers_logs.retention_hours is null or cleanup_ensure_workers_logs.retention_hours < 0 then
    perform pgflow._raise_invalid(format(
      'cleanup_ensure_workers_logs: retention_hours must be >= 0, got %s',
      coalesce(cleanup_ensure_workers_logs.retention_hours::text, 'NULL')));
  end if;
  if pgflow._trusted_relation('cron.job') is null or pgflow._trusted_relation('cron.job_run_details') is null then
    cron_deleted := 0;
    return next;
    return;
  end if;
  execute '
    with gone as (
      delete from cron.job_run_details d
      using cron.job j
      where j.jobid = d.jobid and j.jobname = any($1)
        and d.end_time < $2
      returning 1)
    select count(*) from gone'
    into cron_deleted
    using pgflow._keep_alive_job_names(),
          pgflow.now() - make_interval(hours => cleanup_ensure_workers_logs.retention_hours);
  return next;
end;
$$;

-- pg_cron, where it exists, runs ensure_workers every 5 seconds (second
-- intervals need pg_cron 1.5+; older versions get every minute), unless
-- setup_ensure_workers_cron (or pgflow, before a switch) scheduled
-- pgflow_ensure_workers. Installs cleanly without pg_cron.
do $$
begin
  if to_regnamespace('cron') is not null
     and pgflow._trusted_function('cron.schedule(text,text,text)') is not null
     and not pgflow._cron_job_exists('pgflow_ensure_workers') then
    begin
      perform cron.schedule('edgeflow_ensure_workers', '5 seconds', 'select pgflow.ensure_workers()');
    exception when others then
      perform cron.schedule('edgeflow_ensure_workers', '* * * * *', 'select pgflow.ensure_workers()');
    end;
  end if;
end
$$;
