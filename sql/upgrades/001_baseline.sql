-- Release 001, the baseline: the schema. Tables and names follow the pgflow SQL
-- API so its users and tools can switch. Limits come from src/limits.ts.

-- pgmq 1.5+ carries every task message. Supabase ships it as an extension;
-- elsewhere it has to be installed before this migration runs.
do $$
declare
  v_version text;
begin
  if to_regnamespace('pgmq') is null then
    if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pgmq') then
      create extension pgmq;
    else
      raise exception 'edgeflow needs pgmq 1.5 or newer, and this server has neither a pgmq schema nor the pgmq extension'
        using hint = 'On Supabase enable pgmq (Database > Extensions); elsewhere install pgmq first.';
    end if;
  end if;
  select extversion into v_version from pg_catalog.pg_extension where extname = 'pgmq';
  if v_version is not null
     and pg_catalog.string_to_array(pg_catalog.split_part(v_version, '-', 1), '.')::int[] < array[1, 5] then
    raise exception 'edgeflow needs pgmq 1.5 or newer, found pgmq %', v_version
      using hint = 'ALTER EXTENSION pgmq UPDATE;';
  end if;
end
$$;

-- A database where pgflow (not edgeflow) is installed: its schema is set aside
-- as pgflow_pre_edgeflow, data and all, so nothing is lost; a later release
-- takes its flows, runs and grants over. edgeflow's own schema carries a comment
-- that says so.
do $$
begin
  if to_regnamespace('pgflow') is not null
     and coalesce(pg_catalog.obj_description(to_regnamespace('pgflow'), 'pg_namespace'), '')
       not like 'edgeflow%' then
    if to_regnamespace('pgflow_pre_edgeflow') is not null then
      raise exception 'schema pgflow is not edgeflow''s, and pgflow_pre_edgeflow exists already'
        using hint = 'A previous takeover was not finished: look at pgflow_pre_edgeflow, then drop or rename it.';
    end if;
    alter schema pgflow rename to pgflow_pre_edgeflow;
  end if;
end
$$;

create schema pgflow;
comment on schema pgflow is 'edgeflow: Postgres-native DAG workflows (pgflow-compatible SQL API)';

-- The engine's clock (pgflow.now(), sql/engine/clock.sql) is the server's
-- plus this offset, which only tests move (pgflow.advance_clock).
create table pgflow.clock (
  id boolean primary key default true check (id),
  offset_by interval not null default '0 seconds'
);
insert into pgflow.clock default values;

------------------------------------------------------------------------------
-- Definitions
------------------------------------------------------------------------------

create table pgflow.flows (
  flow_slug text primary key,
  opt_max_attempts int not null default 3,
  opt_base_delay int not null default 5,
  opt_timeout int not null default 60,
  created_at timestamptz not null default now(),
  constraint flows_slug_is_valid
    check (flow_slug ~ '{{SLUG_PATTERN}}' and length(flow_slug) <= {{MAX_FLOW_SLUG_LENGTH}} and flow_slug <> '{{RESERVED_SLUG}}'),
  constraint flows_max_attempts_range check (opt_max_attempts between {{MIN_MAX_ATTEMPTS}} and {{MAX_MAX_ATTEMPTS}}),
  constraint flows_base_delay_range check (opt_base_delay between {{MIN_BASE_DELAY}} and {{MAX_BASE_DELAY}}),
  constraint flows_timeout_range check (opt_timeout between {{MIN_TIMEOUT}} and {{MAX_TIMEOUT}})
);

create table pgflow.steps (
  flow_slug text not null references pgflow.flows (flow_slug),
  step_slug text not null,
  step_type text not null default 'single',
  step_index int not null default 0,
  deps_count int not null default 0,
  opt_max_attempts int,
  opt_base_delay int,
  opt_timeout int,
  opt_start_delay int,
  created_at timestamptz not null default now(),
  primary key (flow_slug, step_slug),
  unique (flow_slug, step_index),
  constraint steps_slug_is_valid
    check (step_slug ~ '{{SLUG_PATTERN}}' and length(step_slug) <= {{MAX_STEP_SLUG_LENGTH}} and step_slug <> '{{RESERVED_SLUG}}'),
  constraint steps_type_is_known check (step_type in ('single', 'map')),
  constraint steps_map_has_one_source check (step_type = 'single' or deps_count <= 1),
  constraint steps_deps_count_min check (deps_count >= 0),
  constraint steps_max_attempts_range check (opt_max_attempts between {{MIN_MAX_ATTEMPTS}} and {{MAX_MAX_ATTEMPTS}}),
  constraint steps_base_delay_range check (opt_base_delay between {{MIN_BASE_DELAY}} and {{MAX_BASE_DELAY}}),
  constraint steps_timeout_range check (opt_timeout between {{MIN_TIMEOUT}} and {{MAX_TIMEOUT}}),
  constraint steps_start_delay_range check (opt_start_delay between {{MIN_START_DELAY}} and {{MAX_START_DELAY}})
);

create table pgflow.deps (
  flow_slug text not null references pgflow.flows (flow_slug),
  dep_slug text not null,
  step_slug text not null,
  created_at timestamptz not null default now(),
  primary key (flow_slug, dep_slug, step_slug),
  foreign key (flow_slug, dep_slug) references pgflow.steps (flow_slug, step_slug),
  foreign key (flow_slug, step_slug) references pgflow.steps (flow_slug, step_slug),
  constraint deps_not_self check (dep_slug <> step_slug)
);

create index deps_step_idx on pgflow.deps (flow_slug, step_slug);

------------------------------------------------------------------------------
-- Runtime state
------------------------------------------------------------------------------

create table pgflow.runs (
  run_id uuid primary key default gen_random_uuid(),
  flow_slug text not null references pgflow.flows (flow_slug),
  status text not null default 'started',
  input jsonb not null,
  output jsonb,
  remaining_steps int not null default 0,
  started_at timestamptz not null default now(),
  completed_at timestamptz,
  failed_at timestamptz,
  constraint runs_status_is_known check (status in ('started', 'completed', 'failed')),
  constraint runs_remaining_steps_min check (remaining_steps >= 0),
  constraint runs_completed_at_matches check ((status = 'completed') = (completed_at is not null)),
  constraint runs_failed_at_matches check ((status = 'failed') = (failed_at is not null))
);

create index runs_flow_started_idx on pgflow.runs (flow_slug, started_at);

-- Retention scans finished runs by age.
create index runs_finished_idx on pgflow.runs (coalesce(completed_at, failed_at))
  where status <> 'started';

create table pgflow.step_states (
  flow_slug text not null references pgflow.flows (flow_slug),
  run_id uuid not null references pgflow.runs (run_id),
  step_slug text not null,
  status text not null default 'created',
  remaining_deps int not null default 0,
  initial_tasks int,
  remaining_tasks int,
  error_message text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  failed_at timestamptz,
  primary key (run_id, step_slug),
  foreign key (flow_slug, step_slug) references pgflow.steps (flow_slug, step_slug),
  constraint step_states_status_is_known
    check (status in ('created', 'started', 'completed', 'failed')),
  constraint step_states_remaining_deps_min check (remaining_deps >= 0),
  constraint step_states_initial_tasks_min check (initial_tasks >= 0),
  constraint step_states_remaining_tasks_min check (remaining_tasks >= 0),
  constraint step_states_started_has_tasks
    check (status <> 'started' or (initial_tasks is not null and remaining_tasks is not null))
);

-- Readiness: steps of a run waiting for nothing.
create index step_states_ready_idx on pgflow.step_states (run_id)
  where status = 'created' and remaining_deps = 0;

create table pgflow.step_tasks (
  flow_slug text not null references pgflow.flows (flow_slug),
  run_id uuid not null references pgflow.runs (run_id),
  step_slug text not null,
  message_id bigint,
  task_index int not null default 0,
  status text not null default 'queued',
  attempts_count int not null default 0,
  error_message text,
  output jsonb,
  last_worker_id uuid,
  queued_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  failed_at timestamptz,
  primary key (run_id, step_slug, task_index),
  foreign key (run_id, step_slug) references pgflow.step_states (run_id, step_slug),
  constraint step_tasks_status_is_known
    check (status in ('queued', 'started', 'completed', 'failed')),
  constraint step_tasks_task_index_min check (task_index >= 0),
  constraint step_tasks_attempts_min check (attempts_count >= 0)
);

-- start_tasks finds tasks by the message ids a worker read from the flow's queue.
create index step_tasks_message_idx on pgflow.step_tasks (flow_slug, message_id);

-- Failing a run closes its open tasks; recovery scans started tasks by age.
create index step_tasks_open_idx on pgflow.step_tasks (run_id) where status in ('queued', 'started');

create index step_tasks_started_idx on pgflow.step_tasks (started_at) where status = 'started';

------------------------------------------------------------------------------
-- Workers
------------------------------------------------------------------------------

create table pgflow.workers (
  worker_id uuid primary key,
  queue_name text not null,
  function_name text not null,
  started_at timestamptz not null default now(),
  last_heartbeat_at timestamptz not null default now(),
  deprecated_at timestamptz,
  stopped_at timestamptz
);

create index workers_queue_heartbeat_idx on pgflow.workers (queue_name, last_heartbeat_at);

create table pgflow.worker_functions (
  function_name text primary key,
  enabled boolean not null default true,
  debounce interval not null default '6 seconds',
  last_invoked_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint worker_functions_debounce_min check (debounce >= '0 seconds')
);

-- What start_tasks returns for each task a worker should run.
create type pgflow.step_task_record as (
  flow_slug text,
  run_id uuid,
  step_slug text,
  input jsonb,
  msg_id bigint,
  task_index int
);
