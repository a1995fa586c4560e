-- edgeflow SQL core, part 11: completing a task and claiming the next ones in
-- one transaction. A worker with free slots reports a completion and, in the
-- same round trip, reads and starts up to qty visible tasks of the flow,
-- including those the completion just made ready. This saves one round trip
-- and one wake-up per DAG level. (An edgeflow extension; pgflow has no such call.)
create function pgflow.complete_task_and_claim(
  run_id uuid,
  step_slug text,
  task_index int,
  output jsonb,
  worker_id uuid,
  vt int,
  qty int
)
returns setof pgflow.step_task_record
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_flow text;
  v_msg_ids bigint[];
begin
  if complete_task_and_claim.qty is null or complete_task_and_claim.qty < 0
     or complete_task_and_claim.vt is null or complete_task_and_claim.vt < 1 then
    perform pgflow._raise_invalid(format(
      'complete_task_and_claim: qty must be >= 0 and vt >= 1, got qty %s, vt %s',
      coalesce(complete_task_and_claim.qty::text, 'NULL'), coalesce(complete_task_and_claim.vt::text, 'NULL')));
  end if;
  select t.flow_slug into v_flow
  from pgflow.complete_task(complete_task_and_claim.run_id, complete_task_and_claim.step_slug,
                            complete_task_and_claim.task_index, complete_task_and_claim.output) t;
  if complete_task_and_claim.qty = 0 then
    return;
  end if;
  -- Messages sent by the completion are visible to this transaction only, so
  -- this worker claims them before any other can.
  select array_agg(m.msg_id) into v_msg_ids
  from pgmq.read(v_flow, complete_task_and_claim.vt, complete_task_and_claim.qty) m;
  if v_msg_ids is null then
    return;
  end if;
  return query
    select * from pgflow.start_tasks(v_flow, v_msg_ids, complete_task_and_claim.worker_id);
end;
$$;

revoke all on function pgflow.complete_task_and_claim(uuid, text, int, jsonb, uuid, int, int) from public;
