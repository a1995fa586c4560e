-- Wake-up hints (README, "Worker wake-up"): a statement that queues messages
-- visible at once tells LISTENing workers with NOTIFY "pgflow:queue:<flow>".
--
-- A report that claims in the same transaction (complete_task_and_claim,
-- complete_tasks_and_claim) holds back the hints its completions would send,
-- and after its claim sends only those its claim may have left work for: a
-- flow it did not claim from, or its own flow when the claim took as many
-- messages as it asked for (counting messages, not started tasks: a message
-- whose task cannot start fills the claim too). A claim that took fewer found
-- nothing else visible, so the tasks the report made ready are all claimed
-- already (by it, or by a concurrent claimer it skipped over). Without the hold, each such report woke
-- every idle worker of the flow for a read that found nothing, and on a busy
-- machine that read competed with the next step's report.
--
-- The hold is a transaction-local setting. Any role may set it in its own
-- transaction; that withholds only that transaction's hints, which cost
-- latency (a worker's idle wait ends by itself), never work.

-- Announces visible messages of a flow, or records the hint while a report
-- holds hints back.
create or replace function pgflow._announce_ready(flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_held text[];
begin
  if current_setting('edgeflow.hold_wakeups', true) is distinct from 'on' then
    perform pg_notify('{{QUEUE_CHANNEL_PREFIX}}' || _announce_ready.flow_slug, '');
    return;
  end if;
  v_held := coalesce(nullif(current_setting('edgeflow.held_wakeups', true), ''), '{}')::text[];
  if not (_announce_ready.flow_slug = any(v_held)) then
    perform set_config('edgeflow.held_wakeups',
      array_append(v_held, _announce_ready.flow_slug)::text, true);
  end if;
end;
$$;

-- Starts holding hints back, for a report about to claim.
create or replace function pgflow._hold_wakeups()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform set_config('edgeflow.hold_wakeups', 'on', true);
  perform set_config('edgeflow.held_wakeups', '', true);
  -- Until a claim says otherwise: a report whose claim never ran holds back nothing.
  perform set_config('edgeflow.claim_was_full', 'on', true);
end;
$$;

-- Notes, during a hold, whether the claim took as many messages as it asked for.
create or replace function pgflow._note_claim(was_full boolean)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if current_setting('edgeflow.hold_wakeups', true) = 'on' then
    perform set_config('edgeflow.claim_was_full', case when was_full then 'on' else 'off' end, true);
  end if;
end;
$$;

-- Ends the hold after the claim on claimed_flow: sends the hints held back for
-- other flows, and for claimed_flow if the claim was full (it may have left
-- visible messages behind).
create or replace function pgflow._release_wakeups(claimed_flow text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_flow text;
  v_claim_was_full boolean := current_setting('edgeflow.claim_was_full', true) is distinct from 'off';
begin
  perform set_config('edgeflow.hold_wakeups', 'off', true);
  for v_flow in
    select h.flow_slug
    from unnest(coalesce(nullif(current_setting('edgeflow.held_wakeups', true), ''), '{}')::text[])
      as h(flow_slug)
  loop
    if v_flow is distinct from claimed_flow or v_claim_was_full then
      perform pg_notify('{{QUEUE_CHANNEL_PREFIX}}' || v_flow, '');
    end if;
  end loop;
  perform set_config('edgeflow.held_wakeups', '', true);
end;
$$;
