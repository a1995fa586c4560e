-- Defining flows and steps: slugs, option bounds, create_flow and add_step.
-- As in pgflow, calling either again for an existing flow or step returns the
-- existing row unchanged, even when the options differ (a NOTICE names the
-- difference: options are tuned with UPDATE, see README "Switching from
-- pgflow"). A step whose structure (type, dependencies) differs is refused.

-- A slug names a flow or a step: an identifier-like word, and never "run",
-- which is the key of the flow input in every step's input object.
create or replace function pgflow.is_valid_slug(slug text)
returns boolean
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select slug is not null
    and length(slug) <= {{MAX_STEP_SLUG_LENGTH}}
    and slug ~ '{{SLUG_PATTERN}}'
    and slug <> '{{RESERVED_SLUG}}';
$$;

-- The range of each flow/step option, from src/limits.ts (the DSL reads the
-- same numbers). Bounded so that the engine's arithmetic never overflows.
create or replace function pgflow._option_bounds(option text, out minimum int, out maximum int)
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  case option
    when 'max_attempts' then minimum := {{MIN_MAX_ATTEMPTS}}; maximum := {{MAX_MAX_ATTEMPTS}};
    when 'base_delay' then minimum := {{MIN_BASE_DELAY}}; maximum := {{MAX_BASE_DELAY}};
    when 'timeout' then minimum := {{MIN_TIMEOUT}}; maximum := {{MAX_TIMEOUT}};
    when 'start_delay' then minimum := {{MIN_START_DELAY}}; maximum := {{MAX_START_DELAY}};
    else raise exception '_option_bounds: unknown option %', coalesce(quote_literal(option), 'NULL');
  end case;
end;
$$;

-- NULL (inherit) or within the option's bounds.
create or replace function pgflow._option_in_range(option text, value numeric)
returns boolean
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_bounds record;
begin
  v_bounds := pgflow._option_bounds(option);
  return value is null or (value >= v_bounds.minimum and value <= v_bounds.maximum);
end;
$$;

-- Raises naming the option, its value and its bounds (pgflow._option_bounds).
create or replace function pgflow._check_option(what text, name text, value numeric)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_bounds record;
begin
  if not pgflow._option_in_range(name, value) then
    v_bounds := pgflow._option_bounds(name);
    perform pgflow._raise_invalid(format('%s: %s must be between %s and %s, got %s',
      what, name, v_bounds.minimum, v_bounds.maximum, value));
  end if;
end;
$$;

create or replace function pgflow.create_flow(
  flow_slug text,
  max_attempts int default 3,
  base_delay int default 5,
  timeout int default 60
)
returns pgflow.flows
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('create_flow(%L)', create_flow.flow_slug);
  v_flow pgflow.flows;
begin
  if not pgflow.is_valid_slug(create_flow.flow_slug) then
    perform pgflow._raise_invalid(format(
      '%s: flow_slug must match {{SLUG_PATTERN}}, be at most {{MAX_STEP_SLUG_LENGTH}} characters and not be "{{RESERVED_SLUG}}"',
      v_what));
  end if;
  -- The flow's queue is named by its slug; pgmq limits queue names to 47 characters.
  if length(create_flow.flow_slug) > {{MAX_FLOW_SLUG_LENGTH}} then
    perform pgflow._raise_invalid(format(
      '%s: flow_slug is %s characters; a flow slug names its pgmq queue and may have at most {{MAX_FLOW_SLUG_LENGTH}}',
      v_what, length(create_flow.flow_slug)));
  end if;
  perform pgflow._check_option(v_what, 'max_attempts', create_flow.max_attempts);
  perform pgflow._check_option(v_what, 'base_delay', create_flow.base_delay);
  perform pgflow._check_option(v_what, 'timeout', create_flow.timeout);

  -- Before the flow's row: compiling its queue's access (below) must not wait
  -- for a lock while this transaction holds a row another creator waits for.
  perform pgflow._lock_flow_definitions();
  -- NULL takes the default, as omitting the argument does.
  insert into pgflow.flows (flow_slug, opt_max_attempts, opt_base_delay, opt_timeout)
  values (create_flow.flow_slug, coalesce(create_flow.max_attempts, 3),
          coalesce(create_flow.base_delay, 5), coalesce(create_flow.timeout, 60))
  on conflict (flow_slug) do nothing
  returning * into v_flow;

  if v_flow.flow_slug is null then
    select * into v_flow from pgflow.flows where flow_slug = create_flow.flow_slug;
    if (v_flow.opt_max_attempts, v_flow.opt_base_delay, v_flow.opt_timeout)
       is distinct from (coalesce(create_flow.max_attempts, 3), coalesce(create_flow.base_delay, 5),
                         coalesce(create_flow.timeout, 60)) then
      raise notice '%: the flow exists with max_attempts=%, base_delay=%, timeout=%; kept unchanged (asked for %, %, %)',
        v_what, v_flow.opt_max_attempts, v_flow.opt_base_delay, v_flow.opt_timeout,
        coalesce(create_flow.max_attempts, 3), coalesce(create_flow.base_delay, 5), coalesce(create_flow.timeout, 60);
    end if;
    return v_flow;
  end if;

  perform pgmq.create(create_flow.flow_slug);
  -- Its queue's statements planned once per connection (queue_access.sql).
  perform pgflow._compile_queue_access();
  return v_flow;
end;
$$;

create or replace function pgflow.add_step(
  flow_slug text,
  step_slug text,
  deps_slugs text[] default '{}',
  max_attempts int default null,
  base_delay int default null,
  timeout int default null,
  start_delay int default null,
  step_type text default 'single',
  required_input_pattern jsonb default null,
  forbidden_input_pattern jsonb default null,
  when_unmet text default 'skip',
  when_exhausted text default 'fail'
)
returns pgflow.steps
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_what text := format('add_step(%L, %L)', add_step.flow_slug, add_step.step_slug);
  v_deps text[] := coalesce(add_step.deps_slugs, '{}');
  v_type text := coalesce(add_step.step_type, 'single');
  v_when_unmet text := coalesce(add_step.when_unmet, 'skip');
  v_when_exhausted text := coalesce(add_step.when_exhausted, 'fail');
  v_unknown text;
  v_existing pgflow.steps;
  v_existing_deps text[];
  v_step pgflow.steps;
begin
  -- Serialises step additions per flow so step_index stays dense.
  perform 1 from pgflow.flows where flow_slug = add_step.flow_slug for update;
  if not found then
    raise exception '%: flow % does not exist', v_what, coalesce(quote_literal(add_step.flow_slug), 'NULL')
      using errcode = 'no_data_found', hint = 'Call pgflow.create_flow first.';
  end if;
  if not pgflow.is_valid_slug(add_step.step_slug) then
    perform pgflow._raise_invalid(format(
      '%s: step_slug must match {{SLUG_PATTERN}}, be at most {{MAX_STEP_SLUG_LENGTH}} characters and not be "{{RESERVED_SLUG}}"',
      v_what));
  end if;
  if v_type not in ('single', 'map') then
    perform pgflow._raise_invalid(format(
      '%s: step_type must be ''single'' or ''map'', got %L', v_what, v_type));
  end if;
  if array_position(v_deps, null) is not null then
    perform pgflow._raise_invalid(format('%s: deps_slugs must not contain NULL', v_what));
  end if;
  if add_step.step_slug = any(v_deps) then
    perform pgflow._raise_invalid(format(
      '%s: a step cannot depend on itself (that is a cycle)', v_what));
  end if;
  if cardinality(v_deps) <> (select count(distinct d) from unnest(v_deps) d) then
    perform pgflow._raise_invalid(format('%s: deps_slugs lists a step twice: %s', v_what, v_deps));
  end if;
  if v_type = 'map' and cardinality(v_deps) > 1 then
    perform pgflow._raise_invalid(format(
      '%s: a map step takes at most one dependency (the array it maps over), got %s',
      v_what, cardinality(v_deps)));
  end if;
  perform pgflow._check_option(v_what, 'max_attempts', add_step.max_attempts);
  perform pgflow._check_option(v_what, 'base_delay', add_step.base_delay);
  perform pgflow._check_option(v_what, 'timeout', add_step.timeout);
  perform pgflow._check_option(v_what, 'start_delay', add_step.start_delay);
  perform pgflow._check_step_condition(v_what, add_step.required_input_pattern,
    add_step.forbidden_input_pattern, v_when_unmet, v_when_exhausted);

  select * into v_existing from pgflow.steps
  where flow_slug = add_step.flow_slug and step_slug = add_step.step_slug;
  if found then
    select coalesce(array_agg(dep_slug order by dep_slug), '{}') into v_existing_deps
    from pgflow.deps where flow_slug = add_step.flow_slug and step_slug = add_step.step_slug;
    if v_existing.step_type is distinct from v_type
       or v_existing_deps is distinct from (select coalesce(array_agg(d order by d), '{}') from unnest(v_deps) d) then
      perform pgflow._raise_invalid(format(
        '%s: the step exists with step_type=%s and deps=%s; asked for step_type=%s and deps=%s '
        || '(a different structure needs a new flow slug)',
        v_what, v_existing.step_type, v_existing_deps, v_type, v_deps));
    end if;
    -- Conditions decide which steps run: they are structure, as in pgflow's shape comparison.
    if (v_existing.required_input_pattern, v_existing.forbidden_input_pattern,
        v_existing.when_unmet, v_existing.when_exhausted)
       is distinct from (add_step.required_input_pattern, add_step.forbidden_input_pattern,
                         v_when_unmet, v_when_exhausted) then
      perform pgflow._raise_invalid(format(
        '%s: the step exists with required_input_pattern=%s, forbidden_input_pattern=%s, when_unmet=%s, '
        || 'when_exhausted=%s; asked for %s, %s, %s, %s (a different condition needs a new flow slug)',
        v_what, coalesce(v_existing.required_input_pattern::text, 'NULL'),
        coalesce(v_existing.forbidden_input_pattern::text, 'NULL'), v_existing.when_unmet,
        v_existing.when_exhausted, coalesce(add_step.required_input_pattern::text, 'NULL'),
        coalesce(add_step.forbidden_input_pattern::text, 'NULL'), v_when_unmet, v_when_exhausted));
    end if;
    if (v_existing.opt_max_attempts, v_existing.opt_base_delay, v_existing.opt_timeout, v_existing.opt_start_delay)
       is distinct from (add_step.max_attempts, add_step.base_delay, add_step.timeout, add_step.start_delay) then
      raise notice '%: the step exists with max_attempts=%, base_delay=%, timeout=%, start_delay=%; kept unchanged',
        v_what, v_existing.opt_max_attempts, v_existing.opt_base_delay, v_existing.opt_timeout,
        v_existing.opt_start_delay;
    end if;
    return v_existing;
  end if;

  select d into v_unknown from unnest(v_deps) d
  where not exists (
    select 1 from pgflow.steps s where s.flow_slug = add_step.flow_slug and s.step_slug = d)
  limit 1;
  if v_unknown is not null then
    perform pgflow._raise_invalid(format(
      '%s: unknown dependency %L; add steps in topological order (dependencies first)',
      v_what, v_unknown));
  end if;

  -- Runs in progress have their step states fixed at start; a new step would never run in them.
  if exists (select 1 from pgflow.runs where flow_slug = add_step.flow_slug and status = 'started') then
    perform pgflow._raise_invalid(format(
      '%s: the flow has runs in progress; change a flow only when none is started, or use a new flow slug',
      v_what));
  end if;

  insert into pgflow.steps (
    flow_slug, step_slug, step_type, step_index, deps_count,
    opt_max_attempts, opt_base_delay, opt_timeout, opt_start_delay,
    required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted
  )
  values (
    add_step.flow_slug, add_step.step_slug, v_type,
    (select count(*) from pgflow.steps where flow_slug = add_step.flow_slug),
    cardinality(v_deps),
    add_step.max_attempts, add_step.base_delay, add_step.timeout, add_step.start_delay,
    add_step.required_input_pattern, add_step.forbidden_input_pattern, v_when_unmet, v_when_exhausted
  )
  returning * into v_step;

  insert into pgflow.deps (flow_slug, dep_slug, step_slug)
  select add_step.flow_slug, d, add_step.step_slug from unnest(v_deps) d;

  return v_step;
end;
$$;
