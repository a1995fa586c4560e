-- edgeflow SQL core, part 11: completing a task and claiming the next ones in
-- one transaction. A worker with free slots reports a completion and, in the
-- same round trip, reads and starts up to qty visible tasks of the flow,
-- including those the completion just made ready. This saves one round trip
-- and one wake-up per DAG level. (An edgeflow extension; pgflow has no such call.)
--
-- Returns {"status", "error_message"} of the reported task and "claimed": the
-- started tasks, each with its message's read_ct, enqueued_at, vt, message, headers,
-- and "attempt": which attempt of the task this is (1 = the first).
create function pgflow.complete_task_and_claim(
  run_id uuid,
  step_slug text,
  task_index int,
  output jsonb,
  worker_id uuid,
  vt int,
  qty int
)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_task pgflow.step_tasks;
  v_messages pgmq.message_record[];
  v_claimed jsonb := '[]'::jsonb;
begin
  if complete_task_and_claim.qty is null or complete_task_and_claim.qty < 0
     or complete_task_and_claim.vt is null or complete_task_and_claim.vt < 1 then
    perform pgflow._raise_invalid(format(
      'complete_task_and_claim: qty must be >= 0 and vt >= 1, got qty %s, vt %s',
      coalesce(complete_task_and_claim.qty::text, 'NULL'), coalesce(complete_task_and_claim.vt::text, 'NULL')));
  end if;
  select * into v_task
  from pgflow.complete_task(complete_task_and_claim.run_id, complete_task_and_claim.step_slug,
                            complete_task_and_claim.task_index, complete_task_and_claim.output);

  if complete_task_and_claim.qty > 0 then
    -- Messages sent by the completion are visible to this transaction only, so
    -- this worker claims them before any other can.
    v_messages := array(
      select m from pgmq.read(v_task.flow_slug, complete_task_and_claim.vt, complete_task_and_claim.qty) m);
    if cardinality(v_messages) > 0 then
      select coalesce(jsonb_agg(jsonb_build_object(
               'flow_slug', s.flow_slug, 'run_id', s.run_id, 'step_slug', s.step_slug,
               'input', s.input, 'msg_id', s.msg_id, 'task_index', s.task_index,
               'read_ct', m.read_ct, 'enqueued_at', m.enqueued_at, 'vt', m.vt,
               'message', m.message, 'headers', m.headers,
               'attempt', t.attempts_count + 1)), '[]'::jsonb)
        into v_claimed
      from pgflow.start_tasks(v_task.flow_slug,
             array(select (e).msg_id from unnest(v_messages) e), complete_task_and_claim.worker_id) s
      join unnest(v_messages) m on m.msg_id = s.msg_id
      -- This statement sees step_tasks as before start_tasks counted the attempt.
      join pgflow.step_tasks t
        on t.run_id = s.run_id and t.step_slug = s.step_slug and t.task_index = s.task_index;
    end if;
  end if;

  return jsonb_build_object('status', v_task.status, 'error_message', v_task.error_message,
                            'claimed', v_claimed);
end;
$$;

revoke all on function pgflow.complete_task_and_claim(uuid, text, int, jsonb, uuid, int, int) from public;
