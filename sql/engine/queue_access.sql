-- Queue access compiled per flow: claiming, archiving and sending a flow's task
-- messages with statements planned once per connection.
--
-- pgmq's functions build each statement from the queue's name and EXECUTE it,
-- so every call parses and plans it again: on a worker's hot path, claiming ten
-- tasks and archiving ten messages cost more in planning than in running.
-- _compile_queue_access writes _queue_claim, _queue_archive, _queue_send and
-- _queue_has_visible
-- with one branch of static SQL per flow whose queue exists (PL/pgSQL keeps
-- their plans for the session) and, for any other queue, the dynamic
-- statement. create_flow and delete_flow_and_data compile again; so does every
-- release (the statement at the end of this file), which covers flows created
-- before it, by pgflow or by an earlier edgeflow.
--
-- The rows written are pgmq 1.5's: a message's columns as pgmq.send_batch
-- writes them, the archive's as pgmq.archive moves them
-- (tests/queue_access_test.ts compares both paths).
--
-- Each call compares the queue's name with every compiled flow's in turn: about
-- 0.05 us a flow (a call for the last of 500 flows costs some 25 us more than
-- for the first).

-- Serialises the transactions that change which flows exist (create_flow,
-- delete_flow_and_data) and compile: each takes this first and holds it to
-- commit, so a compiler that waited sees every flow committed before it (in
-- READ COMMITTED; a REPEATABLE READ transaction reads the flows as of its
-- snapshot, so a flow committed after it began keeps the dynamic statements
-- until the next compile). A table lock rather than an advisory one: only a
-- role that may write pgflow.flows can take it, so no other role can hold up
-- flow creation. A role that may not is not one that can compile either (the
-- owner of these functions owns the table), and it goes on without the lock.
create or replace function pgflow._lock_flow_definitions()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  lock table pgflow.flows in share row exclusive mode;
exception when insufficient_privilege then
  null;
end;
$$;

create or replace function pgflow._compile_queue_access()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $compile$
declare
  v_claim text := '';
  v_archive text := '';
  v_send text := '';
  v_visible text := '';
  v_flow record;
  v_options text := 'language plpgsql set search_path = pg_catalog, pg_temp '
    -- As the hot entry points (ARCHITECTURE.md, "Key lookups stay key lookups"
    -- and "Planned once per connection").
    'set enable_seqscan = off set plan_cache_mode = force_generic_plan';
  -- The claim, one text for both paths: %1$s is the queue's table, %2$s-%5$s
  -- the most messages, the steps, their seconds hidden and the default seconds.
  -- The picked ids reach the update as one array, so the update can only look
  -- them up by key. As a join (pgmq.read's form), a plan made while the queue
  -- was tiny could read the whole queue for each claim: a nested loop over a
  -- full scan of it, which made draining a queue quadratic in its length.
  v_claim_sql constant text := $sql$
        update %1$s q
           set vt = clock_timestamp() + make_interval(secs =>
                 coalesce(%4$s[array_position(%3$s, q.message ->> 'step_slug')], %5$s)),
               read_ct = q.read_ct + 1
         where q.msg_id = any (array(
           select m.msg_id from %1$s m
            where m.vt <= clock_timestamp()
            order by m.msg_id
            limit %2$s
            for update skip locked))
        returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers$sql$;
begin
  -- One compiler at a time (two replacing a function at once would fail); the
  -- last to commit writes every flow committed before it.
  perform pgflow._lock_flow_definitions();
  begin
    for v_flow in
      select f.flow_slug, 'q_' || lower(f.flow_slug) as q, 'a_' || lower(f.flow_slug) as a
      from pgflow.flows f
      where to_regclass(format('pgmq.%I', 'q_' || lower(f.flow_slug))) is not null
        and to_regclass(format('pgmq.%I', 'a_' || lower(f.flow_slug))) is not null
      order by f.flow_slug
    loop
      v_claim := v_claim || format($branch$
    if p_queue = %1$L then
      return query %2$s;
      return;
    end if;$branch$, v_flow.flow_slug,
        format(v_claim_sql, format('pgmq.%I', v_flow.q), 'p_qty', 'p_steps', 'p_hidden_for', 'p_vt'));
      v_archive := v_archive || format($branch$
    if p_queue = %1$L then
      with archived as (
        delete from pgmq.%2$I q where q.msg_id = any(p_msg_ids)
        returning q.msg_id, q.vt, q.read_ct, q.enqueued_at, q.message, q.headers)
      insert into pgmq.%3$I (msg_id, vt, read_ct, enqueued_at, message, headers)
      select a.msg_id, a.vt, a.read_ct, a.enqueued_at, a.message, a.headers from archived a;
      return;
    end if;$branch$, v_flow.flow_slug, v_flow.q, v_flow.a);
      v_send := v_send || format($branch$
    if p_queue = %1$L then
      return query
        insert into pgmq.%2$I (vt, message)
        select v_vt, u.message from unnest(p_msgs) with ordinality as u(message, ord) order by u.ord
        returning msg_id;
      return;
    end if;$branch$, v_flow.flow_slug, v_flow.q);
      v_visible := v_visible || format($branch$
    if p_queue = %1$L then
      return exists (select 1 from pgmq.%2$I q where q.vt <= clock_timestamp());
    end if;$branch$, v_flow.flow_slug, v_flow.q);
    end loop;

    -- Claims up to p_qty visible messages of the queue in msg_id order, as
    -- pgmq.read does, hiding each for its step's seconds in p_hidden_for (the
    -- position of its step_slug in p_steps), else for p_vt.
    execute format($create$
create or replace function pgflow._queue_claim(p_queue text, p_qty int, p_steps text[],
  p_hidden_for int[], p_vt int)
returns setof pgmq.message_record %s as %L$create$, v_options, 'begin' || v_claim || format($generic$
  return query execute format(%L, format('pgmq.%%I', 'q_' || lower(p_queue)))
  using p_qty, p_steps, p_hidden_for, p_vt;
end;$generic$, format(v_claim_sql, '%1$s', '$1', '$2', '$3', '$4')));
    -- Moves messages to the queue's archive, as pgmq.archive does.
    execute format($create$
create or replace function pgflow._queue_archive(p_queue text, p_msg_ids bigint[])
returns void %s as %L$create$, v_options, 'begin' || v_archive || $generic$
  perform pgmq.archive(p_queue, p_msg_ids);
end;$generic$);
    -- Sends messages visible after p_delay seconds, as pgmq.send_batch does;
    -- ids ascend in array order.
    execute format($create$
create or replace function pgflow._queue_send(p_queue text, p_msgs jsonb[], p_delay int)
returns setof bigint %s as %L$create$, v_options, $declare$
declare
  v_vt timestamptz := clock_timestamp() + make_interval(secs => p_delay);
begin$declare$ || v_send || $generic$
  return query select b.msg_id from pgmq.send_batch(p_queue, p_msgs, p_delay) as b(msg_id);
end;$generic$);
    -- Whether the queue holds a visible message: one probe of its vt index, for
    -- a long poll to look often and claim only when there is something to claim.
    execute format($create$
create or replace function pgflow._queue_has_visible(p_queue text)
returns boolean %s as %L$create$, v_options, $declare$
declare
  v_visible boolean;
begin$declare$ || v_visible || $generic$
  execute format('select exists (select 1 from pgmq.%I q where q.vt <= clock_timestamp())',
                 'q_' || lower(p_queue)) into v_visible;
  return v_visible;
end;$generic$);
    revoke all on function pgflow._queue_claim(text, int, text[], int[], int) from public;
    revoke all on function pgflow._queue_has_visible(text) from public;
    revoke all on function pgflow._queue_archive(text, bigint[]) from public;
    revoke all on function pgflow._queue_send(text, jsonb[], int) from public;
  exception when insufficient_privilege then
    -- A role that may create flows but does not own these functions (or may
    -- not look into pgmq's schema): nothing changes, and its flow goes through
    -- the dynamic statements until the owner compiles again (any create_flow,
    -- delete_flow_and_data or release by the owner).
    raise notice 'pgflow: queue access not compiled (%); flow queues use dynamic statements', sqlerrm;
  end;
end;
$compile$;

select pgflow._compile_queue_access();
