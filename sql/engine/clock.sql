-- The engine's clock. Every engine function reads time through pgflow.now()
-- (the transaction's time) or pgflow.clock_now() (the statement's moment, for
-- comparisons with pgmq's visibility times), never through now() directly.
-- In production the offset is zero; tests move it with pgflow.advance_clock,
-- so retries, start delays, stall recovery and pruning are tested without
-- sleeping or rewriting rows.
--
-- How the engine's clock meets pgmq's: pgmq stamps and compares its times
-- (visibility, enqueueing, archiving) with the server's real clock. Advancing
-- the engine's clock by an interval also moves every time pgmq keeps for a
-- flow's messages back by the same interval, so a message due in 30 s of engine
-- time is due in 30 s of queue time too, a message archived a day ago in engine
-- time was archived a day ago in queue time, and deadlines judged on either
-- side agree. pgflow._queue_time converts an engine time to pgmq's clock.
-- PL/pgSQL, not SQL: a SQL function with a SET clause is planned again on every
-- call, and the engine asks for the time many times per task (see events.sql).
create or replace function pgflow.now()
returns timestamptz
language plpgsql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return now() + (select c.offset_by from pgflow.clock c);
end;
$$;

create or replace function pgflow.clock_now()
returns timestamptz
language plpgsql
volatile
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return clock_timestamp() + (select c.offset_by from pgflow.clock c);
end;
$$;

-- The moment on pgmq's clock (the server's real one, see above) that is
-- engine_time on the engine's clock: compare pgmq's stored times with this.
create or replace function pgflow._queue_time(engine_time timestamptz)
returns timestamptz
language plpgsql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
begin
  return engine_time - (select c.offset_by from pgflow.clock c);
end;
$$;

-- Moves the engine's clock forward (tests only: never granted). Returns the
-- new engine time.
create or replace function pgflow.advance_clock(by_interval interval)
returns timestamptz
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_flow text;
begin
  if by_interval is null or by_interval < interval '0' then
    perform pgflow._raise_invalid(format(
      'advance_clock: by_interval must be a non-negative interval, got %s',
      coalesce(by_interval::text, 'NULL')));
  end if;
  update pgflow.clock set offset_by = offset_by + by_interval;
  for v_flow in select f.flow_slug from pgflow.flows f loop
    if to_regclass(format('pgmq.%I', 'q_' || lower(v_flow))) is not null then
      execute format('update pgmq.%I set vt = vt - $1, enqueued_at = enqueued_at - $1',
        'q_' || lower(v_flow)) using by_interval;
    end if;
    if to_regclass(format('pgmq.%I', 'a_' || lower(v_flow))) is not null then
      execute format(
        'update pgmq.%I set vt = vt - $1, enqueued_at = enqueued_at - $1, archived_at = archived_at - $1',
        'a_' || lower(v_flow)) using by_interval;
    end if;
  end loop;
  return pgflow.now();
end;
$$;
