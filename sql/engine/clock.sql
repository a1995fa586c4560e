-- The engine's clock. Every engine function reads time through pgflow.now()
-- (the transaction's time) or pgflow.clock_now() (the statement's moment, for
-- comparisons with pgmq's visibility times), never through now() directly.
-- In production the offset is zero; tests move it with pgflow.advance_clock,
-- so retries, start delays, stall recovery and pruning are tested without
-- sleeping or rewriting rows.
--
-- How the engine's clock meets pgmq's: pgmq stamps and compares visibility
-- times with the server's real clock_timestamp(). Advancing the engine's clock
-- by an interval also brings every message of every flow's queue forward by
-- the same interval, so a message due in 30 s of engine time is due in 30 s of
-- queue time too, and deadlines judged on either side agree.
create or replace function pgflow.now()
returns timestamptz
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select now() + (select c.offset_by from pgflow.clock c);
$$;

create or replace function pgflow.clock_now()
returns timestamptz
language sql
volatile
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select clock_timestamp() + (select c.offset_by from pgflow.clock c);
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
      execute format('update pgmq.%I set vt = vt - $1', 'q_' || lower(v_flow)) using by_interval;
    end if;
  end loop;
  return pgflow.now();
end;
$$;
