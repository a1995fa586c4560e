-- Compile at startup. A worker sends its flow's shape (src/dsl/flow_shape.ts,
-- or pgflow's extractFlowShape) and the core creates the flow when it is
-- missing, verifies it when it exists, or lists what differs.
--
-- Shape (pgflow's format): {"options"?: {"maxAttempts"?, "baseDelay"?, "timeout"?},
--   "steps": [{"slug", "stepType", "dependencies": [..],
--              "options"?: {"maxAttempts"?, "baseDelay"?, "timeout"?, "startDelay"?}}]}
-- with steps in definition order. Options may be absent or null (the default,
-- or inherited from the flow). They are used when the flow is created and are
-- not compared: operators tune them with UPDATE pgflow.steps / pgflow.flows.
-- A step's condition (pgflow 0.14's keys) is structure: "whenUnmet" and
-- "whenExhausted" ('fail' | 'skip' | 'skip-cascade'), "requiredInputPattern" and
-- "forbiddenInputPattern" ({"defined": false} or {"defined": true, "value": {..}}).
-- Absent keys mean the defaults (skip, fail, no pattern), so shapes of workers
-- older than pgflow 0.14 compare equal; the stored shape leaves defaults out.

-- The stored definition as a shape: {"steps": []} when the flow does not exist;
-- dependencies sorted; options without null values, a step's left out when
-- it has none.
create or replace function pgflow._get_flow_shape(p_flow_slug text)
returns jsonb
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce((
    select jsonb_build_object(
      'options', jsonb_build_object(
        'maxAttempts', f.opt_max_attempts, 'baseDelay', f.opt_base_delay, 'timeout', f.opt_timeout),
      'steps', coalesce((
        select jsonb_agg(
                 jsonb_build_object(
                   'slug', s.step_slug,
                   'stepType', s.step_type,
                   'dependencies', coalesce((
                     select jsonb_agg(d.dep_slug order by d.dep_slug collate "C")
                     from pgflow.deps d
                     where d.flow_slug = s.flow_slug and d.step_slug = s.step_slug), '[]'::jsonb))
                 || case when s.when_unmet = 'skip' then '{}'::jsonb
                         else jsonb_build_object('whenUnmet', s.when_unmet) end
                 || case when s.when_exhausted = 'fail' then '{}'::jsonb
                         else jsonb_build_object('whenExhausted', s.when_exhausted) end
                 || case when s.required_input_pattern is null then '{}'::jsonb
                         else jsonb_build_object('requiredInputPattern',
                                jsonb_build_object('defined', true, 'value', s.required_input_pattern)) end
                 || case when s.forbidden_input_pattern is null then '{}'::jsonb
                         else jsonb_build_object('forbiddenInputPattern',
                                jsonb_build_object('defined', true, 'value', s.forbidden_input_pattern)) end
                 || case when o.options = '{}'::jsonb then '{}'::jsonb
                         else jsonb_build_object('options', o.options) end
               order by s.step_index)
        from pgflow.steps s
        cross join lateral (select jsonb_strip_nulls(jsonb_build_object(
                 'maxAttempts', s.opt_max_attempts, 'baseDelay', s.opt_base_delay,
                 'timeout', s.opt_timeout, 'startDelay', s.opt_start_delay)) as options) o
        where s.flow_slug = f.flow_slug), '[]'::jsonb))
    from pgflow.flows f
    where f.flow_slug = p_flow_slug),
    jsonb_build_object('steps', '[]'::jsonb));
$$;

-- Checks one option of a shape (camelCase key, e.g. "startDelay"): absent or
-- null, or an integer within pgflow._option_bounds; raises naming it.
create or replace function pgflow._check_shape_option(what text, label text, key text, value jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_option text := lower(regexp_replace(key, '([A-Z])', '_\1', 'g'));
  v_number numeric;
  v_bounds record;
begin
  if value is null or jsonb_typeof(value) = 'null' then
    return;
  end if;
  if jsonb_typeof(value) = 'number' then
    v_number := (value #>> '{}')::numeric;
  end if;
  if v_number is null or v_number <> trunc(v_number) or not pgflow._option_in_range(v_option, v_number) then
    v_bounds := pgflow._option_bounds(v_option);
    perform pgflow._raise_invalid(format('%s: shape %s must be an integer between %s and %s, got %s',
      what, label, v_bounds.minimum, v_bounds.maximum, value));
  end if;
end;
$$;

-- Checks that a shape has the structure above; raises naming what is wrong.
create or replace function pgflow._validate_flow_shape(p_flow_slug text, p_shape jsonb)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_what text := format('ensure_flow_compiled(%L)', p_flow_slug);
  v_step jsonb;
  v_key text;
begin
  if jsonb_typeof(p_shape) is distinct from 'object'
     or jsonb_typeof(p_shape -> 'steps') is distinct from 'array'
     or jsonb_typeof(coalesce(p_shape -> 'options', '{}')) not in ('object', 'null') then
    perform pgflow._raise_invalid(format(
      '%s: shape must be an object with "steps" (array) and optionally "options" (object)', v_what));
  end if;
  foreach v_key in array array['maxAttempts', 'baseDelay', 'timeout'] loop
    perform pgflow._check_shape_option(v_what, 'options.' || v_key, v_key, p_shape -> 'options' -> v_key);
  end loop;
  for v_step in select value from jsonb_array_elements(p_shape -> 'steps') loop
    if jsonb_typeof(v_step -> 'slug') is distinct from 'string'
       or (v_step ->> 'stepType') is null or (v_step ->> 'stepType') not in ('single', 'map')
       or jsonb_typeof(v_step -> 'dependencies') is distinct from 'array'
       or jsonb_typeof(coalesce(v_step -> 'options', '{}')) not in ('object', 'null') then
      perform pgflow._raise_invalid(format(
        '%s: each shape step needs "slug" (string), "stepType" (single|map), "dependencies" (array) '
        || 'and optionally "options" (object); got %s',
        v_what, v_step));
    end if;
    foreach v_key in array array['maxAttempts', 'baseDelay', 'timeout', 'startDelay'] loop
      perform pgflow._check_shape_option(v_what,
        format('step %L option %s', v_step ->> 'slug', v_key), v_key, v_step -> 'options' -> v_key);
    end loop;
    foreach v_key in array array['whenUnmet', 'whenExhausted'] loop
      if coalesce(v_step ->> v_key, 'skip') not in ('fail', 'skip', 'skip-cascade') then
        perform pgflow._raise_invalid(format(
          '%s: step %L: shape %s must be "fail", "skip" or "skip-cascade", got %s',
          v_what, v_step ->> 'slug', v_key, v_step -> v_key));
      end if;
    end loop;
    foreach v_key in array array['requiredInputPattern', 'forbiddenInputPattern'] loop
      if jsonb_typeof(coalesce(v_step -> v_key, 'null')) <> 'null'
         and (jsonb_typeof(v_step -> v_key) <> 'object'
              or jsonb_typeof(v_step -> v_key -> 'defined') is distinct from 'boolean'
              or ((v_step -> v_key ->> 'defined')::boolean
                  and jsonb_typeof(v_step -> v_key -> 'value') is distinct from 'object')) then
        perform pgflow._raise_invalid(format(
          '%s: step %L: shape %s must be {"defined": false} or {"defined": true, "value": <object>}, got %s',
          v_what, v_step ->> 'slug', v_key, v_step -> v_key));
      end if;
    end loop;
  end loop;
end;
$$;

-- A shape step's condition with the defaults filled in: {"whenUnmet",
-- "whenExhausted", "requiredInputPattern", "forbiddenInputPattern"}, a pattern
-- being its value or JSON null.
create or replace function pgflow._shape_step_condition(p_step jsonb)
returns jsonb
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object(
    'whenUnmet', coalesce(p_step ->> 'whenUnmet', 'skip'),
    'whenExhausted', coalesce(p_step ->> 'whenExhausted', 'fail'),
    'requiredInputPattern', case when (p_step -> 'requiredInputPattern' ->> 'defined')::boolean
                                 then p_step -> 'requiredInputPattern' -> 'value' else 'null' end,
    'forbiddenInputPattern', case when (p_step -> 'forbiddenInputPattern' ->> 'defined')::boolean
                                  then p_step -> 'forbiddenInputPattern' -> 'value' else 'null' end);
$$;

-- Structural differences between the code's shape and the database's, in
-- words, compared by position as pgflow does: step count, the slug at each
-- index, step type, dependencies and condition. Options are not structure.
-- Empty when equal.
create or replace function pgflow._compare_flow_shapes(p_local jsonb, p_db jsonb)
returns text[]
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_diffs text[] := '{}';
  v_local_steps jsonb := coalesce(p_local -> 'steps', '[]');
  v_db_steps jsonb := coalesce(p_db -> 'steps', '[]');
  v_local_count int := jsonb_array_length(coalesce(p_local -> 'steps', '[]'));
  v_db_count int := jsonb_array_length(coalesce(p_db -> 'steps', '[]'));
  v_local jsonb;
  v_db jsonb;
  v_local_deps text[];
  v_db_deps text[];
  v_local_condition jsonb;
  v_db_condition jsonb;
  v_key text;
begin
  if v_local_count <> v_db_count then
    v_diffs := v_diffs || format('step count: code has %s, database has %s', v_local_count, v_db_count);
  end if;
  for v_index in 0 .. greatest(v_local_count, v_db_count) - 1 loop
    v_local := v_local_steps -> v_index;
    v_db := v_db_steps -> v_index;
    if v_local is null then
      v_diffs := v_diffs || format('step at index %s: the code has none, the database has %L',
        v_index, v_db ->> 'slug');
      continue;
    elsif v_db is null then
      v_diffs := v_diffs || format('step at index %s: the code has %L, the database has none',
        v_index, v_local ->> 'slug');
      continue;
    end if;
    if (v_local ->> 'slug') is distinct from (v_db ->> 'slug') then
      v_diffs := v_diffs || format('step at index %s: code has slug %L, database has %L',
        v_index, v_local ->> 'slug', v_db ->> 'slug');
    end if;
    if (v_local ->> 'stepType') is distinct from (v_db ->> 'stepType') then
      v_diffs := v_diffs || format('step at index %s (%L): code has step type %s, database has %s',
        v_index, v_local ->> 'slug', v_local ->> 'stepType', v_db ->> 'stepType');
    end if;
    select coalesce(array_agg(e order by e collate "C"), '{}') into v_local_deps
    from jsonb_array_elements_text(coalesce(v_local -> 'dependencies', '[]')) e;
    select coalesce(array_agg(e order by e collate "C"), '{}') into v_db_deps
    from jsonb_array_elements_text(coalesce(v_db -> 'dependencies', '[]')) e;
    if v_local_deps is distinct from v_db_deps then
      v_diffs := v_diffs || format('step at index %s (%L): code depends on [%s], database on [%s]',
        v_index, v_local ->> 'slug', array_to_string(v_local_deps, ', '), array_to_string(v_db_deps, ', '));
    end if;
    v_local_condition := pgflow._shape_step_condition(v_local);
    v_db_condition := pgflow._shape_step_condition(v_db);
    foreach v_key in array array['whenUnmet', 'whenExhausted', 'requiredInputPattern', 'forbiddenInputPattern'] loop
      if (v_local_condition -> v_key) is distinct from (v_db_condition -> v_key) then
        v_diffs := v_diffs || format('step at index %s (%L): code has %s %s, database has %s',
          v_index, v_local ->> 'slug', v_key, v_local_condition -> v_key, v_db_condition -> v_key);
      end if;
    end loop;
  end loop;
  return v_diffs;
end;
$$;

-- Creates a flow from a shape (create_flow, then add_step in order).
create or replace function pgflow._create_flow_from_shape(p_flow_slug text, p_shape jsonb)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_step jsonb;
  v_condition jsonb;
begin
  perform pgflow.create_flow(
    flow_slug => p_flow_slug,
    max_attempts => (p_shape -> 'options' ->> 'maxAttempts')::int,
    base_delay => (p_shape -> 'options' ->> 'baseDelay')::int,
    timeout => (p_shape -> 'options' ->> 'timeout')::int);
  for v_step in
    select e.value from jsonb_array_elements(p_shape -> 'steps') with ordinality as e(value, ord) order by e.ord
  loop
    v_condition := pgflow._shape_step_condition(v_step);
    perform pgflow.add_step(
      flow_slug => p_flow_slug,
      step_slug => v_step ->> 'slug',
      deps_slugs => array(select jsonb_array_elements_text(v_step -> 'dependencies')),
      max_attempts => (v_step -> 'options' ->> 'maxAttempts')::int,
      base_delay => (v_step -> 'options' ->> 'baseDelay')::int,
      timeout => (v_step -> 'options' ->> 'timeout')::int,
      start_delay => (v_step -> 'options' ->> 'startDelay')::int,
      step_type => v_step ->> 'stepType',
      required_input_pattern => nullif(v_condition -> 'requiredInputPattern', 'null'),
      forbidden_input_pattern => nullif(v_condition -> 'forbiddenInputPattern', 'null'),
      when_unmet => v_condition ->> 'whenUnmet',
      when_exhausted => v_condition ->> 'whenExhausted');
  end loop;
end;
$$;

-- Deletes a flow with all its runs, states, tasks and its queue. Irreversible.
create or replace function pgflow.delete_flow_and_data(p_flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  -- First, as in create_flow: the queue's access is compiled again below.
  perform pgflow._lock_flow_definitions();
  perform 1 from pgflow.flows where flow_slug = p_flow_slug for update;
  if not found then
    perform pgflow._no_such(format('delete_flow_and_data: flow %s does not exist',
      coalesce(quote_literal(p_flow_slug), 'NULL')));
  end if;
  delete from pgflow.step_tasks where flow_slug = p_flow_slug;
  delete from pgflow.step_states where flow_slug = p_flow_slug;
  delete from pgflow.runs where flow_slug = p_flow_slug;
  delete from pgflow.deps where flow_slug = p_flow_slug;
  delete from pgflow.steps where flow_slug = p_flow_slug;
  delete from pgflow.flows where flow_slug = p_flow_slug;
  perform pgmq.drop_queue(p_flow_slug);
  perform pgflow._compile_queue_access();
end;
$$;

-- Makes the database's definition of a flow match the code's shape:
--   compiled   the flow was missing and has been created;
--   verified   it exists and matches;
--   recompiled it differed and allow_data_loss (or, as in pgflow, a local
--              Supabase stack: pgflow.is_local()) let it be deleted and created again;
--   mismatch   it differs; nothing changed; "differences" says how.
-- Concurrent callers for one flow are serialised, so it is never created twice.
create or replace function pgflow.ensure_flow_compiled(
  flow_slug text,
  shape jsonb,
  allow_data_loss boolean default false
)
returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_db jsonb;
  v_diffs text[];
begin
  perform pgflow._validate_flow_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
  perform pg_advisory_xact_lock(hashtext('pgflow.ensure_flow_compiled'), hashtext(ensure_flow_compiled.flow_slug));

  perform 1 from pgflow.flows where flow_slug = ensure_flow_compiled.flow_slug;
  if not found then
    perform pgflow._create_flow_from_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
    return jsonb_build_object('status', 'compiled', 'differences', '[]'::jsonb);
  end if;

  v_db := pgflow._get_flow_shape(ensure_flow_compiled.flow_slug);
  v_diffs := pgflow._compare_flow_shapes(ensure_flow_compiled.shape, v_db);
  if cardinality(v_diffs) = 0 then
    return jsonb_build_object('status', 'verified', 'differences', '[]'::jsonb);
  end if;
  if coalesce(ensure_flow_compiled.allow_data_loss, false) or pgflow.is_local() then
    perform pgflow.delete_flow_and_data(ensure_flow_compiled.flow_slug);
    perform pgflow._create_flow_from_shape(ensure_flow_compiled.flow_slug, ensure_flow_compiled.shape);
    return jsonb_build_object('status', 'recompiled', 'differences', to_jsonb(v_diffs));
  end if;
  return jsonb_build_object('status', 'mismatch', 'differences', to_jsonb(v_diffs));
end;
$$;
