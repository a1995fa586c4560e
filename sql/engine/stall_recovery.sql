-- Fails every task still 'started' past its own step's timeout plus the
-- {{TIMEOUT_MARGIN_SECONDS}} s margin start_tasks gives its message (its worker vanished): each such attempt
-- is retried with backoff, or fails the run when attempts are used up. Limited
-- to a flow and to some of its messages when given; returns the messages of the tasks
-- it failed. Used by start_tasks (messages that came back) and requeue_stalled_tasks.
--
-- The deadline is compared with pgflow.clock_now(), the engine's reading of
-- clock_timestamp(), the clock pgmq.read uses, not pgflow.now() (the
-- transaction's start): start_tasks set the message's vt to clock_timestamp()
-- + timeout + margin after started_at (its pgflow.now()), so a message read
-- when its vt had passed always has started_at + timeout + margin <= the read's
-- clock <= this clock, even when the reading transaction began before the
-- deadline (complete_tasks_and_claim, a long read_with_poll). Both sides carry
-- the clock's offset (sql/engine/clock.sql), so moving the clock keeps this true.
create or replace function pgflow._fail_stalled_tasks(p_flow_slug text, p_msg_ids bigint[])
returns bigint[]
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_task record;
  v_failed bigint[] := '{}';
begin
  for v_task in
    select t.run_id, t.step_slug, t.task_index, t.message_id, t.last_worker_id,
           coalesce(s.opt_timeout, f.opt_timeout) as timeout
    -- Two branches, each with its own index, rather than one filter with
    -- "p_msg_ids is null or ...": that form scans every started task (and,
    -- until a vacuum, the index entries of every task started before) on each
    -- claim, which made a wide map's cost grow with the square of its width.
    from (
      select t.* from pgflow.step_tasks t
      -- Both conditions of step_tasks_started_idx, so the sweep can use it.
      where p_msg_ids is null and t.status = 'started' and t.started_at is not null
        and (p_flow_slug is null or t.flow_slug = p_flow_slug)
      union all
      -- Message ids are per queue, so this branch needs the flow.
      select t.* from pgflow.step_tasks t
      where t.flow_slug = p_flow_slug and t.message_id = any(p_msg_ids) and t.status = 'started'
    ) t
    join pgflow.steps s on s.flow_slug = t.flow_slug and s.step_slug = t.step_slug
    join pgflow.flows f on f.flow_slug = t.flow_slug
    where t.started_at + make_interval(secs => coalesce(s.opt_timeout, f.opt_timeout) + {{TIMEOUT_MARGIN_SECONDS}}) <= pgflow.clock_now()
    order by t.started_at
  loop
    perform pgflow.fail_task(v_task.run_id, v_task.step_slug, v_task.task_index,
      format('timed out: worker %s did not report within the step timeout of %s s',
             v_task.last_worker_id, v_task.timeout));
    v_failed := v_failed || v_task.message_id;
  end loop;
  return v_failed;
end;
$$;

-- Recovery: a task still 'started' past its step's own timeout (plus the
-- {{TIMEOUT_MARGIN_SECONDS}} s margin start_tasks gives its message) has lost its worker. Each such
-- attempt counts as failed: retried with backoff, or failing the run when
-- attempts are exhausted. Workers call this periodically; pg_cron can too.
create or replace function pgflow.requeue_stalled_tasks(flow_slug text default null)
returns int
language sql
set search_path = pg_catalog, pg_temp
as $$
  select cardinality(pgflow._fail_stalled_tasks(requeue_stalled_tasks.flow_slug, null));
$$;
