-- edgeflow SQL core, part 12: completing many tasks in one call. Map tasks
-- (most of a busy worker's reports) are completed set-based: one UPDATE for
-- the tasks, one archive per queue, one decrement per step; only a step that
-- finishes goes through the per-step path. Other reports go through
-- complete_task one by one. All runs of the batch are locked first, in run id
-- order, so concurrent batches cannot deadlock. (An edgeflow extension.)
--
-- Returns one row per report, in the order given: the task's status and
-- error_message afterwards (late or duplicate reports change nothing).
create function pgflow.complete_tasks(
  run_ids uuid[],
  step_slugs text[],
  task_indexes int[],
  outputs jsonb[]
)
returns table (ord int, status text, error_message text)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_count int := coalesce(cardinality(run_ids), 0);
  v_done_ords int[];
  v_done_flows text[];
  v_done_runs uuid[];
  v_done_steps text[];
  v_done_msgs bigint[];
  v_flow_slug text;
  v_step record;
  v_report record;
begin
  if v_count <> coalesce(cardinality(step_slugs), 0) or v_count <> coalesce(cardinality(task_indexes), 0)
     or v_count <> coalesce(cardinality(outputs), 0) then
    perform pgflow._raise_invalid(format(
      'complete_tasks: run_ids, step_slugs, task_indexes and outputs must have the same length, got %s, %s, %s, %s',
      v_count, coalesce(cardinality(step_slugs), 0), coalesce(cardinality(task_indexes), 0),
      coalesce(cardinality(outputs), 0)));
  end if;
  if v_count = 0 then
    return;
  end if;

  perform 1 from pgflow.runs r
  where r.run_id = any(complete_tasks.run_ids)
  order by r.run_id
  for update;

  -- Set-based path: started tasks of map steps in started runs.
  with done as (
    update pgflow.step_tasks t
       set status = 'completed', completed_at = now(),
           output = coalesce(b.output, 'null'::jsonb), error_message = null
      from (
             -- A task reported twice in one batch: the first report counts, as it would
             -- in two calls (UPDATE ... FROM would pick either).
             select distinct on (u.run_id, u.step_slug, u.task_index) u.*
             from unnest(complete_tasks.run_ids, complete_tasks.step_slugs,
                         complete_tasks.task_indexes, complete_tasks.outputs)
                    with ordinality as u(run_id, step_slug, task_index, output, ord)
             order by u.run_id, u.step_slug, u.task_index, u.ord
           ) b,
           pgflow.steps s, pgflow.runs r
     where t.run_id = b.run_id and t.step_slug = b.step_slug and t.task_index = b.task_index
       and t.status = 'started'
       and s.flow_slug = t.flow_slug and s.step_slug = t.step_slug and s.step_type = 'map'
       and r.run_id = t.run_id and r.status = 'started'
    returning b.ord::int as ord, t.flow_slug, t.run_id, t.step_slug, t.message_id
  )
  select array_agg(d.ord), array_agg(d.flow_slug), array_agg(d.run_id),
         array_agg(d.step_slug), array_agg(d.message_id)
    into v_done_ords, v_done_flows, v_done_runs, v_done_steps, v_done_msgs
  from done d;

  if v_done_ords is not null then
    for v_flow_slug in select distinct f from unnest(v_done_flows) f loop
      perform pgmq.archive(v_flow_slug, array(
        select m from unnest(v_done_flows, v_done_msgs) as x(f, m)
        where x.f = v_flow_slug and x.m is not null));
    end loop;

    -- Count the steps down; a step that reached zero finishes as complete_task would.
    for v_step in
      update pgflow.step_states ss
         set remaining_tasks = ss.remaining_tasks - c.n
        from (select x.run_id, x.step_slug, count(*)::int as n
              from unnest(v_done_runs, v_done_steps) as x(run_id, step_slug)
              group by x.run_id, x.step_slug) c
       where ss.run_id = c.run_id and ss.step_slug = c.step_slug
      returning ss.run_id, ss.step_slug, ss.remaining_tasks
    loop
      if v_step.remaining_tasks = 0 then
        perform pgflow._finish_step(v_step.run_id, v_step.step_slug, 'map',
          pgflow._step_output(v_step.run_id, v_step.step_slug, 'map'));
        perform pgflow.start_ready_steps(v_step.run_id);
        perform pgflow.maybe_complete_run(v_step.run_id);
      end if;
    end loop;
  end if;

  -- Everything else, one by one, in (run, step, task) order.
  for v_report in
    select b.run_id, b.step_slug, b.task_index, b.output
    from unnest(complete_tasks.run_ids, complete_tasks.step_slugs,
                complete_tasks.task_indexes, complete_tasks.outputs)
      with ordinality as b(run_id, step_slug, task_index, output, ord)
    where not (b.ord = any(coalesce(v_done_ords, '{}')))
    order by b.run_id, b.step_slug, b.task_index
  loop
    perform pgflow.complete_task(v_report.run_id, v_report.step_slug, v_report.task_index, v_report.output);
  end loop;

  return query
    select b.ord::int, t.status, t.error_message
    from unnest(complete_tasks.run_ids, complete_tasks.step_slugs, complete_tasks.task_indexes)
      with ordinality as b(run_id, step_slug, task_index, ord)
    left join pgflow.step_tasks t
      on t.run_id = b.run_id and t.step_slug = b.step_slug and t.task_index = b.task_index
    order by b.ord;
end;
$$;

revoke all on function pgflow.complete_tasks(uuid[], text[], int[], jsonb[]) from public;
