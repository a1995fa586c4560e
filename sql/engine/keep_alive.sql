-- Keeping workers alive on Supabase.
--
-- An edge function instance lives at most its wall-clock limit (150 s free,
-- 400 s paid). pg_cron calls pgflow.ensure_workers() every few seconds; for
-- each tracked function with no live worker it asks pg_net to invoke the
-- function (debounced), which boots a new worker. Credentials come from
-- Supabase Vault: secret "edgeflow_functions_url" (e.g.
-- https://<ref>.supabase.co/functions/v1) and "edgeflow_service_role_key".
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

-- True when functions are served locally (supabase start / edgeflow's local
-- runtime): the functions URL points at this machine, or none is configured.
create or replace function pgflow.is_local()
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(
    pgflow._vault_secret('edgeflow_functions_url') ~ '^https?://(localhost|127\.0\.0\.1|host\.docker\.internal|kong)(:|/|$)',
    true);
$$;

-- Invokes (through pg_net) every enabled, tracked function that has no live
-- worker and was not invoked within its debounce; returns those functions.
-- A worker is live when it is neither stopped nor deprecated and sent a
-- heartbeat within heartbeat_timeout.
create or replace function pgflow.ensure_workers(heartbeat_timeout interval default '15 seconds')
returns table (function_name text, request_id bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_url text := pgflow._vault_secret('edgeflow_functions_url');
  v_key text := pgflow._vault_secret('edgeflow_service_role_key');
  v_has_net boolean := pgflow._trusted_function('net.http_post(text,jsonb,jsonb,jsonb,integer)') is not null;
  v_function text;
  v_request bigint;
begin
  if heartbeat_timeout is null or heartbeat_timeout <= interval '0' then
    perform pgflow._raise_invalid(format(
      'ensure_workers: heartbeat_timeout must be a positive interval, got %s',
      coalesce(heartbeat_timeout::text, 'NULL')));
  end if;
  for v_function in
    update pgflow.worker_functions wf
       set last_invoked_at = pgflow.now(), updated_at = pgflow.now()
     where wf.enabled
       and (wf.last_invoked_at is null or wf.last_invoked_at <= pgflow.now() - wf.debounce)
       and not exists (
         select 1 from pgflow.workers w
         where w.function_name = wf.function_name
           and w.stopped_at is null and w.deprecated_at is null
           and w.last_heartbeat_at > pgflow.now() - ensure_workers.heartbeat_timeout)
    returning wf.function_name
  loop
    v_request := null;
    if v_has_net and v_url is not null then
      execute 'select net.http_post(url => $1, body => $2, params => $3, headers => $4, timeout_milliseconds => $5)'
        into v_request
        using rtrim(v_url, '/') || '/' || v_function,
              jsonb_build_object('reason', 'no live worker'),
              '{}'::jsonb,
              jsonb_build_object('Content-Type', 'application/json')
                || case when v_key is null then '{}'::jsonb
                        else jsonb_build_object('Authorization', 'Bearer ' || v_key) end,
              5000;
    end if;
    function_name := v_function;
    request_id := v_request;
    return next;
  end loop;
end;
$$;

-- pg_cron, where it exists, runs ensure_workers every 5 seconds (second
-- intervals need pg_cron 1.5+; older versions get every minute). Installs
-- cleanly without pg_cron.
do $$
begin
  if to_regnamespace('cron') is not null
     and pgflow._trusted_function('cron.schedule(text,text,text)') is not null then
    begin
      perform cron.schedule('edgeflow_ensure_workers', '5 seconds', 'select pgflow.ensure_workers()');
    exception when others then
      perform cron.schedule('edgeflow_ensure_workers', '* * * * *', 'select pgflow.ensure_workers()');
    end;
  end if;
end
$$;
