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
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_count int := coalesce(cardinality(run_ids), 0);
  v_done_ords int[];
  v_group record;
  v_group_ords int[];
  v_group_msgs bigint[];
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

  -- Set-based path: started tasks of map steps in started runs, one statement per
  -- (run, step) group. "task_index = any(...)" keeps each an index lookup of just the
  -- reported tasks, however wide the map.
  for v_group in
    select b.run_id, b.step_slug, t0.flow_slug,
           array_agg(b.task_index order by b.ord) as task_indexes,
           array_agg(b.output order by b.ord) as outputs,
           array_agg(b.ord order by b.ord) as ords
    from (
      -- A task reported twice in one batch: the first report counts, as in two calls.
      select distinct on (u.run_id, u.step_slug, u.task_index) u.*
      from unnest(complete_tasks.run_ids, complete_tasks.step_slugs,
                  complete_tasks.task_indexes, complete_tasks.outputs)
             with ordinality as u(run_id, step_slug, task_index, output, ord)
      order by u.run_id, u.step_slug, u.task_index, u.ord
    ) b
    join pgflow.runs r on r.run_id = b.run_id and r.status = 'started'
    join pgflow.step_states t0 on t0.run_id = b.run_id and t0.step_slug = b.step_slug
    join pgflow.steps s on s.flow_slug = t0.flow_slug and s.step_slug = b.step_slug
                       and s.step_type = 'map'
    group by b.run_id, b.step_slug, t0.flow_slug
  loop
    with done as (
      update pgflow.step_tasks t
         set status = 'completed', completed_at = now(),
             output = coalesce(u.output, 'null'::jsonb), error_message = null
        from unnest(v_group.task_indexes, v_group.outputs, v_group.ords) as u(task_index, output, ord)
       where t.run_id = v_group.run_id and t.step_slug = v_group.step_slug
         and t.task_index = any(v_group.task_indexes)
         and t.task_index = u.task_index
         and t.status = 'started'
      returning u.ord::int as ord, t.message_id
    )
    select array_agg(d.ord), array_agg(d.message_id) into v_group_ords, v_group_msgs from done d;
    continue when v_group_ords is null;
    v_done_ords := coalesce(v_done_ords, '{}') || v_group_ords;
    perform pgmq.archive(v_group.flow_slug, array(select m from unnest(v_group_msgs) m where m is not null));
    perform pgflow._count_down_step(v_group.run_id, v_group.step_slug, 'map',
      cardinality(v_group_ords), null);
  end loop;

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
