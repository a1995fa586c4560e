-- edgeflow's pgmq-compatible SQL, for servers without the pgmq extension.
--
-- Written from pgmq's public documentation (API of pgmq 1.5: schema, table
-- layout, function names, argument names and types, result columns and
-- semantics) and checked against the released pgmq 1.5.1 by
-- tests/pgmq_differential_test.ts; it is not pgmq's source. Dev and test only: never part of
-- supabase/migrations. Production uses `CREATE EXTENSION pgmq`.
--
-- Layout, as in pgmq:
--   pgmq.meta                 one row per queue
--   pgmq.q_<name>             messages waiting or in flight
--   pgmq.a_<name>             archived messages (archived_at added)
-- Table names are lower('q_' || queue_name), as in pgmq; pgmq.meta keeps the
-- name as given, one row per spelling (its unique key is case-sensitive).
-- Queue names are what pgmq 1.5.1 accepts: any text without $, ;, -- or a
-- single quote (tables are quoted identifiers), at most 47 characters when a
-- queue is created.
--
-- Safe to run on an empty database (and again: everything is IF NOT EXISTS or
-- CREATE OR REPLACE). Needs only what a database owner has.

CREATE SCHEMA IF NOT EXISTS pgmq;

COMMENT ON SCHEMA pgmq IS
  'edgeflow pgmq-compatible SQL (src/dev/pgmq_compat.sql), not the pgmq extension';

-- As pgmq: monitoring roles may read every queue.
GRANT USAGE ON SCHEMA pgmq TO pg_monitor;

CREATE TABLE IF NOT EXISTS pgmq.meta (
  queue_name varchar NOT NULL UNIQUE,
  is_partitioned boolean NOT NULL,
  is_unlogged boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

DO $types$
BEGIN
  IF to_regtype('pgmq.message_record') IS NULL THEN
    CREATE TYPE pgmq.message_record AS (
      msg_id bigint,
      read_ct integer,
      enqueued_at timestamptz,
      vt timestamptz,
      message jsonb,
      headers jsonb
    );
  END IF;
  IF to_regtype('pgmq.queue_record') IS NULL THEN
    CREATE TYPE pgmq.queue_record AS (
      queue_name varchar,
      is_partitioned boolean,
      is_unlogged boolean,
      created_at timestamptz
    );
  END IF;
  IF to_regtype('pgmq.metrics_result') IS NULL THEN
    CREATE TYPE pgmq.metrics_result AS (
      queue_name text,
      queue_length bigint,
      newest_msg_age_sec integer,
      oldest_msg_age_sec integer,
      total_messages bigint,
      scrape_time timestamptz,
      queue_visible_length bigint
    );
  END IF;
END
$types$;

GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;

------------------------------------------------------------------------------
-- Names
------------------------------------------------------------------------------

-- Raises unless a queue may be created under queue_name: pgmq allows at most
-- 47 characters (q_<name>_msg_id_seq must fit in an identifier).
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  IF length(queue_name) > 47 THEN
    RAISE EXCEPTION 'pgmq queue name % is too long: % characters, the maximum is 47',
      quote_literal(queue_name), length(queue_name);
  END IF;
END;
$$;

-- The table (in schema pgmq) for a queue: prefix 'q' (messages) or 'a'
-- (archive). NULL for a NULL name, as in pgmq. The characters refused are
-- pgmq's; every other name is safe because tables are always quoted (%I).
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
  IF queue_name ~ '\$|;|--|''' THEN
    RAISE EXCEPTION 'invalid pgmq queue name %: it must not contain $, ;, -- or a single quote',
      quote_literal(queue_name);
  END IF;
  RETURN lower(prefix || '_' || queue_name);
END;
$$;

-- format_table_name for a name that must be given: raises null_value_not_allowed
-- (pgmq fails with the same SQLSTATE when it quotes the NULL name).
CREATE OR REPLACE FUNCTION pgmq._table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
  IF queue_name IS NULL THEN
    RAISE EXCEPTION 'pgmq queue name must not be NULL'
      USING errcode = 'null_value_not_allowed';
  END IF;
  RETURN pgmq.format_table_name(queue_name, prefix);
END;
$$;

-- Like _table_name, but raises undefined_table (42P01, pgmq's SQLSTATE for a
-- missing queue) naming the queue when the table does not exist.
CREATE OR REPLACE FUNCTION pgmq._existing_table(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._table_name(queue_name, prefix);
BEGIN
  IF to_regclass(format('pgmq.%I', v_table)) IS NULL THEN
    RAISE EXCEPTION 'pgmq queue "%" does not exist (no table pgmq.%)', queue_name, v_table
      USING errcode = 'undefined_table',
            hint = 'Create it with pgmq.create(queue_name).';
  END IF;
  RETURN v_table;
END;
$$;

------------------------------------------------------------------------------
-- Queue management
------------------------------------------------------------------------------

-- Creates a queue's tables, indexes and pgmq.meta row, each only when missing.
-- As in pgmq, only the message table of an unlogged queue is unlogged (the
-- archive stays logged), the archive index is named after the queue as given,
-- and a meta row is added for every new spelling of the name.
CREATE OR REPLACE FUNCTION pgmq._create_queue(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  v_q text := pgmq._table_name(queue_name, 'q');
  v_a text := pgmq._table_name(queue_name, 'a');
  v_kind text := CASE WHEN unlogged THEN 'UNLOGGED ' ELSE '' END;
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  -- Fast path: creating an existing queue is a no-op.
  IF to_regclass(format('pgmq.%I', v_q)) IS NOT NULL
     AND to_regclass(format('pgmq.%I', v_a)) IS NOT NULL
     AND EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = _create_queue.queue_name)
  THEN
    RETURN;
  END IF;

  -- Serializes concurrent create/drop calls; reads of pgmq.meta still proceed.
  LOCK TABLE pgmq.meta IN SHARE ROW EXCLUSIVE MODE;

  EXECUTE format(
    'CREATE %sTABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb
     )', v_kind, v_q);
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       archived_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb
     )', v_a);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', v_q || '_vt_idx', v_q);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
    'archived_at_idx_' || queue_name, v_a);

  INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
  VALUES (_create_queue.queue_name, false, unlogged)
  ON CONFLICT DO NOTHING;
END;
$$;

-- Creates a queue (its q_ and a_ tables and its pgmq.meta row). Idempotent.
CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql
AS $$ SELECT pgmq._create_queue(queue_name, false) $$;

CREATE OR REPLACE FUNCTION pgmq.create(queue_name text)
RETURNS void
LANGUAGE sql
AS $$ SELECT pgmq._create_queue(queue_name, false) $$;

CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql
AS $$ SELECT pgmq._create_queue(queue_name, true) $$;

-- Partitioned queues need pg_partman; this compatible SQL does not offer them.
CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
  queue_name text,
  partition_interval text DEFAULT '10000',
  retention_interval text DEFAULT '100000'
)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pgmq.format_table_name(queue_name, 'q');
  PERFORM pgmq.validate_queue_name(queue_name);
  RAISE EXCEPTION 'pgmq.create_partitioned(%): partitioned queues need pg_partman, which edgeflow''s pgmq-compatible SQL does not support',
    quote_literal(queue_name);
END;
$$;

-- pgmq turns an archive into a pg_partman-partitioned table; here that cannot
-- be done. As in pgmq, a missing or already partitioned archive is a NOTICE.
CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(
  table_name text,
  partition_interval text DEFAULT '10000',
  retention_interval text DEFAULT '100000',
  leading_partition integer DEFAULT 10
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  v_a text := pgmq.format_table_name(table_name, 'a');
  v_kind "char";
BEGIN
  SELECT c.relkind INTO v_kind FROM pg_class c
  WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname = v_a;
  IF v_kind = 'p' THEN
    RAISE NOTICE 'pgmq table % is already partitioned', v_a;
    RETURN;
  ELSIF v_kind IS DISTINCT FROM 'r' THEN
    RAISE NOTICE 'pgmq table % does not exist', v_a;
    RETURN;
  END IF;
  RAISE EXCEPTION 'pgmq.convert_archive_partitioned(%): partitioned archives need pg_partman, which edgeflow''s pgmq-compatible SQL does not support',
    quote_literal(table_name);
END;
$$;

-- Drops a queue and its archive and returns true. A queue without tables
-- raises undefined_table, as pgmq 1.5.1 does. Only the pgmq.meta row spelled
-- exactly as queue_name is removed (pgmq's unique key is case-sensitive).
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
  v_q text;
  v_a text;
BEGIN
  LOCK TABLE pgmq.meta IN SHARE ROW EXCLUSIVE MODE;
  v_q := pgmq._existing_table(queue_name, 'q');
  v_a := pgmq._existing_table(queue_name, 'a');
  EXECUTE format('DROP TABLE pgmq.%I, pgmq.%I', v_q, v_a);
  DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
  RETURN true;
END;
$$;

-- Deprecated in pgmq (a WARNING says so); the flag is ignored.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE WARNING 'pgmq.drop_queue(queue_name, partitioned) is deprecated (removed in pgmq 2.0): use pgmq.drop_queue(queue_name)';
  PERFORM pgmq.drop_queue(queue_name);
  RETURN true;
END;
$$;

-- pgmq uses this to detach an archive from the extension; here there is no
-- extension, so it only checks that the queue exists.
CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pgmq._existing_table(queue_name, 'a');
END;
$$;

-- Every row of pgmq.meta, in no particular order (as pgmq).
CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql
AS $$
  SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at
  FROM pgmq.meta m
$$;

------------------------------------------------------------------------------
-- Sending
------------------------------------------------------------------------------

-- The one implementation of send: every overload below delegates here.
CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
BEGIN
  RETURN QUERY EXECUTE format(
    'INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id', v_table)
  USING delay, msg, headers;
END;
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
  SELECT * FROM pgmq.send(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay))
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $$ SELECT * FROM pgmq.send(queue_name, msg, NULL::jsonb, delay) $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
  SELECT * FROM pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp() + make_interval(secs => delay))
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $$ SELECT * FROM pgmq.send(queue_name, msg, headers, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $$ SELECT * FROM pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp()) $$;

-- The one implementation of send_batch. Returns the new ids in the order of
-- msgs (ids ascend in array order). headers pairs with msgs by position. As in
-- pgmq, the shorter array is padded with NULLs: messages past the end of
-- headers get none, and headers past the end of msgs are sent with a NULL
-- message.
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH inserted AS (
       INSERT INTO pgmq.%I (vt, message, headers)
       SELECT $1, b.msg, b.hdr
       FROM unnest($2, $3) WITH ORDINALITY AS b(msg, hdr, ord)
       ORDER BY b.ord
       RETURNING msg_id
     )
     SELECT msg_id FROM inserted ORDER BY msg_id', v_table)
  USING delay, msgs, headers;
END;
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
  SELECT * FROM pgmq.send_batch(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay))
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $$ SELECT * FROM pgmq.send_batch(queue_name, msgs, NULL::jsonb[], delay) $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
  SELECT * FROM pgmq.send_batch(queue_name, msgs, NULL::jsonb[],
                                clock_timestamp() + make_interval(secs => delay))
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $$ SELECT * FROM pgmq.send_batch(queue_name, msgs, headers, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $$ SELECT * FROM pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp()) $$;

------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------

-- Claims up to qty visible messages (vt <= now), oldest id first, whose
-- message contains `conditional` ('{}' = all): each becomes invisible for vt
-- seconds and its read_ct goes up by one. Rows another transaction is claiming
-- are skipped (FOR UPDATE SKIP LOCKED), so concurrent readers never get the
-- same message.
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH claimable AS (
       SELECT msg_id
       FROM pgmq.%1$I
       WHERE vt <= $1 AND ($4 = ''{}''::jsonb OR message @> $4)
       ORDER BY msg_id
       LIMIT $3
       FOR UPDATE SKIP LOCKED
     ), claimed AS (
       UPDATE pgmq.%1$I q
          SET vt = $1 + make_interval(secs => $2), read_ct = q.read_ct + 1
         FROM claimable c
        WHERE q.msg_id = c.msg_id
       RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
     )
     SELECT * FROM claimed ORDER BY msg_id', v_table)
  USING clock_timestamp(), vt, qty, coalesce(conditional, '{}'::jsonb);
END;
$$;

-- read(), repeated every poll_interval_ms until it returns messages or
-- max_poll_seconds have passed. As in pgmq, the deadline is checked before
-- each attempt, so max_poll_seconds <= 0 returns no rows without reading (and
-- without checking the queue). Each attempt takes a fresh snapshot, so a
-- message committed by another transaction while polling is picked up by the
-- next attempt. pgmq would poll forever for a NULL max_poll_seconds and spin
-- for a NULL poll_interval_ms; here both are refused.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
  queue_name text,
  vt integer,
  qty integer,
  max_poll_seconds integer DEFAULT 5,
  poll_interval_ms integer DEFAULT 100,
  conditional jsonb DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
  v_deadline timestamptz;
BEGIN
  PERFORM pgmq._table_name(queue_name, 'q');
  IF max_poll_seconds IS NULL OR poll_interval_ms IS NULL THEN
    RAISE EXCEPTION 'pgmq.read_with_poll(%): max_poll_seconds and poll_interval_ms must not be NULL',
      quote_literal(queue_name)
      USING errcode = 'null_value_not_allowed';
  END IF;
  v_deadline := clock_timestamp() + make_interval(secs => max_poll_seconds);
  LOOP
    EXIT WHEN clock_timestamp() >= v_deadline;
    RETURN QUERY
      SELECT * FROM pgmq.read(read_with_poll.queue_name, read_with_poll.vt, read_with_poll.qty,
                              read_with_poll.conditional);
    IF FOUND THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(greatest(poll_interval_ms, 1) / 1000.0);
  END LOOP;
END;
$$;

-- Takes the oldest visible message off the queue (deleting it) and returns it.
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH claimable AS (
       SELECT msg_id
       FROM pgmq.%1$I
       WHERE vt <= $1
       ORDER BY msg_id
       LIMIT 1
       FOR UPDATE SKIP LOCKED
     )
     DELETE FROM pgmq.%1$I q
      USING claimable c
      WHERE q.msg_id = c.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers', v_table)
  USING clock_timestamp();
END;
$$;

-- Makes a message invisible until vt seconds from now (0: visible now).
-- Returns the updated message, or no row when there is no such message.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
BEGIN
  RETURN QUERY EXECUTE format(
    'UPDATE pgmq.%I q
        SET vt = $2 + make_interval(secs => $3)
      WHERE q.msg_id = $1
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers', v_table)
  USING msg_id, clock_timestamp(), vt;
END;
$$;

------------------------------------------------------------------------------
-- Archiving and deleting
------------------------------------------------------------------------------

-- Moves messages from q_<name> to a_<name>; returns the ids moved, ascending.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
  v_q text := pgmq._existing_table(queue_name, 'q');
  v_a text := pgmq._existing_table(queue_name, 'a');
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH moved AS (
       DELETE FROM pgmq.%I q
        WHERE q.msg_id = ANY($1)
       RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
     ), archived AS (
       INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, vt, message, headers)
       SELECT m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers FROM moved m
       RETURNING msg_id
     )
     SELECT msg_id FROM archived ORDER BY msg_id', v_q, v_a)
  USING msg_ids;
END;
$$;

-- Moves one message to the archive; false when there is no such message.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE sql
AS $$ SELECT EXISTS (SELECT 1 FROM pgmq.archive(queue_name, ARRAY[msg_id])) $$;

-- Deletes messages; returns the ids deleted, ascending.
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH deleted AS (
       DELETE FROM pgmq.%I q WHERE q.msg_id = ANY($1) RETURNING q.msg_id
     )
     SELECT msg_id FROM deleted ORDER BY msg_id', v_table)
  USING msg_ids;
END;
$$;

-- Deletes one message; false when there is no such message.
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE sql
AS $$ SELECT EXISTS (SELECT 1 FROM pgmq.delete(queue_name, ARRAY[msg_id])) $$;

-- Empties the queue (not the archive) and returns how many messages it held.
-- TRUNCATE, as in pgmq: it needs the TRUNCATE privilege and an exclusive lock,
-- and keeps the id sequence (total_messages) where it is.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
  v_count bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM pgmq.%I', v_table) INTO v_count;
  EXECUTE format('TRUNCATE TABLE pgmq.%I', v_table);
  RETURN v_count;
END;
$$;

------------------------------------------------------------------------------
-- Metrics
------------------------------------------------------------------------------

-- queue_length: messages in the queue; queue_visible_length: those readable
-- now; newest/oldest_msg_age_sec: seconds since the newest/oldest enqueued_at
-- (NULL when empty); total_messages: messages ever sent (the id sequence's
-- position, so it counts archived, deleted and rolled-back sends too). "Now"
-- is the transaction's start, now(), as in pgmq; scrape_time is that time.
CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $$
DECLARE
  v_table text := pgmq._existing_table(queue_name, 'q');
  v_now timestamptz := now();
  v_seq text;
  v_result pgmq.metrics_result;
BEGIN
  v_result.queue_name := queue_name;
  v_result.scrape_time := v_now;
  EXECUTE format(
    'SELECT count(*),
            count(*) FILTER (WHERE vt <= $1),
            extract(epoch FROM $1 - max(enqueued_at))::integer,
            extract(epoch FROM $1 - min(enqueued_at))::integer
     FROM pgmq.%I', v_table)
  INTO v_result.queue_length, v_result.queue_visible_length,
       v_result.newest_msg_age_sec, v_result.oldest_msg_age_sec
  USING v_now;
  v_seq := pg_get_serial_sequence(format('pgmq.%I', v_table), 'msg_id');
  EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s', v_seq)
  INTO v_result.total_messages;
  RETURN v_result;
END;
$$;

-- metrics() of every row of pgmq.meta, in no particular order. As in pgmq, a
-- meta row whose tables are gone raises undefined_table.
CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $$
DECLARE
  v_name text;
BEGIN
  FOR v_name IN SELECT m.queue_name FROM pgmq.meta m LOOP
    RETURN NEXT pgmq.metrics(v_name);
  END LOOP;
END;
$$;
