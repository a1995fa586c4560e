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
-- already (by it, or by a concurrent claimer it skipped over). Without the
-- hold, each such report woke every idle worker of the flow for a read that
-- found nothing, and on a busy machine that read competed with the next
-- step's report.
--
-- Hints that starting the claimed tasks makes (a stalled task it fails may
-- ready its dependents) go out at once: the claim counted its messages before.
--
-- The hold lives in settings keyed by the transaction's id (a SET made for the
-- whole session, which a transaction pooler would pass on to other clients,
-- matches no later transaction) and is read without parsing anything a caller
-- could have set. Any role may set them in its own transaction; that withholds
-- only that transaction's hints, which cost latency (a worker's idle wait ends
-- by itself), never work.

-- The value that marks the hold as this transaction's.
create or replace function pgflow._wakeup_hold_key()
returns text
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  return 'held by ' || pg_current_xact_id()::text;
end;
$$;

-- Whether this transaction holds hints back now.
create or replace function pgflow._wakeups_held()
returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hold text := coalesce(current_setting('edgeflow.hold_wakeups', true), '');
begin
  -- Most calls: no hold set at all (then the key is not worth computing).
  return v_hold <> '' and v_hold = pgflow._wakeup_hold_key();
end;
$$;

-- Announces visible messages of a flow, or records the hint while a report
-- holds hints back.
create or replace function pgflow._announce_ready(flow_slug text)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_held text;
begin
  if not pgflow._wakeups_held() then
    perform pg_notify('{{QUEUE_CHANNEL_PREFIX}}' || _announce_ready.flow_slug, '');
    return;
  end if;
  -- Slugs hold no comma.
  v_held := coalesce(current_setting('edgeflow.held_wakeups', true), '');
  if not (_announce_ready.flow_slug = any(string_to_array(v_held, ','))) then
    perform set_config('edgeflow.held_wakeups',
      concat_ws(',', nullif(v_held, ''), _announce_ready.flow_slug), true);
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
  perform set_config('edgeflow.hold_wakeups', pgflow._wakeup_hold_key(), true);
  perform set_config('edgeflow.held_wakeups', '', true);
  -- Until a claim says otherwise: a report whose claim never read holds back nothing.
  perform set_config('edgeflow.claim_was_full', 'on', true);
end;
$$;

-- Called by every claim once it has read its messages: during a hold, notes
-- whether the claim took as many messages as it asked for, and ends the
-- holding of new hints (those the start of the claimed tasks makes go out).
create or replace function pgflow._note_claim(was_full boolean)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if pgflow._wakeups_held() then
    perform set_config('edgeflow.claim_was_full', case when was_full then 'on' else 'off' end, true);
    perform set_config('edgeflow.hold_wakeups', '', true);
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
  perform set_config('edgeflow.hold_wakeups', '', true);
  for v_flow in
    select h.flow_slug
    from unnest(string_to_array(coalesce(current_setting('edgeflow.held_wakeups', true), ''), ','))
      as h(flow_slug)
  loop
    if v_flow is distinct from claimed_flow or v_claim_was_full then
      -- The hold is off now: this announces.
      perform pgflow._announce_ready(v_flow);
    end if;
  end loop;
  perform set_config('edgeflow.held_wakeups', '', true);
  perform set_config('edgeflow.claim_was_full', '', true);
end;
$$;
