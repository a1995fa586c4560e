/**
 * The engine's clock (sql/engine/clock.sql): pgflow.now() and pgflow.clock_now() are the
 * server's clock plus an offset that only pgflow.advance_clock moves, and moving it brings the
 * flows' queues along, so tests let time pass without sleeping.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { advanceClock } from "./_support/clock.ts";
import { define } from "./_support/drive.ts";
import type { Sql } from "../src/db/connect.ts";

/** Reads a message of `queue` as a worker would; returns the ids it got. */
async function readIds(sql: Sql, queue: string): Promise<number[]> {
  const rows = await sql`select msg_id from pgmq.read(${queue}, 30, 10)`;
  return rows.map((row) => Number(row.msg_id));
}

dbTest(
  "with a zero offset pgflow.now() is now() and clock_now() is clock_timestamp()",
  async ({ sql }) => {
    const [clock] = await sql`select offset_by::text as offset_by from pgflow.clock`;
    assert.equal(clock.offset_by, "00:00:00");
    const [row] = await sql`
    select pgflow.now() = now() as same_now,
           clock_timestamp() as before, pgflow.clock_now() as engine, clock_timestamp() as after`;
    assert.equal(row.same_now, true);
    assert.ok(
      row.before <= row.engine && row.engine <= row.after,
      "clock_now is the statement's moment",
    );
  },
);

dbTest(
  "advance_clock moves pgflow.now() and pgflow.clock_now() by its interval",
  async ({ sql }) => {
    // advance_clock returns the new engine time: the transaction's now() plus the offset.
    const [first] = await sql`
      select (pgflow.advance_clock('1 hour') - now())::text as ahead`;
    assert.equal(first.ahead, "01:00:00");
    await advanceClock(sql, "30 minutes");
    const [row] = await sql`
      select (pgflow.now() - now())::text as ahead,
             clock_timestamp() + interval '90 minutes' as before,
             pgflow.clock_now() as engine,
             clock_timestamp() + interval '90 minutes' as after,
             (select offset_by::text from pgflow.clock) as offset_by`;
    assert.equal(row.ahead, "01:30:00", "now() + 1 h + 30 min");
    assert.ok(row.before <= row.engine && row.engine <= row.after, "clock_timestamp() + 90 min");
    assert.equal(row.offset_by, "01:30:00");

    // A zero interval is allowed and changes nothing.
    await advanceClock(sql, "0 seconds");
    const [again] = await sql`select offset_by::text as offset_by from pgflow.clock`;
    assert.equal(again.offset_by, "01:30:00");
  },
);

dbTest("advance_clock brings a flow queue's messages forward by its interval", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('clocked'); select pgflow.add_step('clocked', 'a');`,
  );
  const [{ delayed }] = await sql`select pgmq.send('clocked', '{"n": 1}'::jsonb, 30) as delayed`;
  const id = Number(delayed);
  assert.deepEqual(await readIds(sql, "clocked"), [], "delayed 30 s");
  await advanceClock(sql, "29 seconds");
  assert.deepEqual(await readIds(sql, "clocked"), [], "29 s is not enough");
  await advanceClock(sql, "1 second");
  assert.deepEqual(await readIds(sql, "clocked"), [id], "readable after 30 s");

  // Archived messages age with the engine too: prune_data_older_than judges them by its clock.
  await sql`select pgmq.archive('clocked', ${id}::bigint)`;
  await advanceClock(sql, "2 days");
  const [{ archived_age }] = await sql`
    select round(extract(epoch from now() - archived_at) / 3600)::int as archived_age
    from pgmq.a_clocked where msg_id = ${id}`;
  assert.equal(archived_age, 48, "archived 2 days ago on pgmq's clock");
});

dbTest("advance_clock leaves queues that belong to no flow on the real clock", async ({ sql }) => {
  await sql`select pgmq.create('plain')`;
  await sql`select pgmq.send('plain', '{"n": 1}'::jsonb, 30)`;
  await advanceClock(sql, "1 hour");
  assert.deepEqual(await readIds(sql, "plain"), [], "a plain queue is not the engine's");
});

dbTest(
  "advance_clock refuses a negative or NULL interval, naming the argument",
  async ({ sql }) => {
    for (
      const [given, shown] of [["-1 second", "-00:00:01"], [null, "NULL"]] as const
    ) {
      await assert.rejects(
        sql`select pgflow.advance_clock(${given}::interval)`,
        (error: { message: string; code: string }) => {
          assert.equal(
            error.message,
            `advance_clock: by_interval must be a non-negative interval, got ${shown}`,
          );
          assert.equal(error.code, "22023");
          return true;
        },
      );
    }
    const [clock] = await sql`select offset_by::text as offset_by from pgflow.clock`;
    assert.equal(clock.offset_by, "00:00:00", "a refused call moves nothing");
  },
);

dbTest("advance_clock is not executable by PUBLIC or a client role", async ({ sql }) => {
  const client = `clock_client_${Date.now()}`;
  await sql.unsafe(`create role ${client} nologin`);
  try {
    // The grants README.md documents for a client role.
    await sql.unsafe(`
      grant usage on schema pgflow to ${client};
      grant execute on function pgflow.start_flow(text, jsonb, uuid) to ${client};
      grant execute on function pgflow.start_flow_with_states(text, jsonb, uuid) to ${client};
      grant execute on function pgflow.get_run_with_states(uuid) to ${client};
      grant select on pgflow.runs, pgflow.step_states to ${client};`);
    const roles = [
      "public",
      client,
      ...(await sql`select rolname from pg_roles
                    where rolname in ('anon', 'authenticated', 'service_role')`)
        .map((row) => row.rolname as string),
    ];
    for (const role of roles) {
      const [row] = await sql`
        select has_function_privilege(${role}, 'pgflow.advance_clock(interval)', 'execute') as can,
               has_table_privilege(${role}, 'pgflow.clock', 'update') as can_update`;
      assert.deepEqual(row, { can: false, can_update: false }, `${role} must not move the clock`);
    }
    const [owner] = await sql`
      select has_function_privilege('pgflow.advance_clock(interval)', 'execute') as can`;
    assert.equal(owner.can, true, "the owner (the test's superuser) may");

    await assert.rejects(
      sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${client}`);
        await tx`select pgflow.advance_clock('1 day')`;
      }),
      /permission denied for function advance_clock/,
    );
  } finally {
    await sql.unsafe(`drop owned by ${client}; drop role ${client}`);
  }
});

/** The functions allowed to read the server's clock directly. */
const READS_REAL_CLOCK = new Set([
  "now", // the engine's clock itself
  "clock_now", // likewise
  "set_vt_batch", // sets pgmq's visibility times, which are on the real clock
  "_queue_claim", // reads and sets them, as pgmq.read does
  "_queue_has_visible", // compares them with the real clock, as _queue_claim does
  "_queue_send", // sets them, as pgmq.send_batch does
  "_compile_queue_access", // writes those
]);

/** Ways SQL reads the time; `pgflow.now()` and `pgflow.clock_now()` are the allowed ones. */
const TIME_READS = [
  /(?<![\w.])((?:\w+\.)?)(now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday)\s*\(/gi,
  /(?<![\w.])()(current_timestamp|current_time|current_date|localtimestamp|localtime)(?!\w)/gi,
  /()('now'|'today'|'tomorrow'|'yesterday')/gi,
];

/** Each place in `source` that reads the time other than through the engine's clock. */
function realClockReads(source: string): string[] {
  const found: string[] = [];
  for (const pattern of TIME_READS) {
    for (const match of source.matchAll(pattern)) {
      if (match[1].toLowerCase() === "pgflow.") continue;
      found.push(match[0]);
    }
  }
  return found;
}

dbTest("every pgflow function reads the time through the engine's clock", async ({ sql }) => {
  const functions = await sql<{ name: string; signature: string; source: string }[]>`
    select p.proname as name, p.oid::regprocedure::text as signature,
           coalesce(p.prosrc, '') || coalesce(pg_get_function_sqlbody(p.oid), '') as source
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'pgflow'`;
  assert.ok(functions.length > 30, `found ${functions.length} functions`);

  const offenders = functions
    .filter((fn) => !READS_REAL_CLOCK.has(fn.name))
    .map((fn) => ({ fn: fn.signature, reads: realClockReads(fn.source) }))
    .filter((fn) => fn.reads.length > 0);
  assert.deepEqual(offenders, [], "read the time through pgflow.now() or pgflow.clock_now()");

  // The scan does find real-clock reads: the allowed functions have them.
  for (const name of READS_REAL_CLOCK) {
    const fn = functions.find((f) => f.name === name);
    assert.ok(fn, `pgflow.${name} exists`);
    assert.ok(realClockReads(fn.source).length > 0, `the scan sees pgflow.${name}'s clock read`);
  }
  // And it tells the engine's clock from the server's.
  assert.deepEqual(realClockReads("select pgflow.now(), pgflow.clock_now(), x.now_at"), []);
  assert.deepEqual(
    realClockReads("select now(), pg_catalog.clock_timestamp(), current_timestamp, 'now'::date"),
    ["now(", "pg_catalog.clock_timestamp(", "current_timestamp", "'now'"],
  );
});
