/**
 * The real pgmq 1.5.1 extension against edgeflow's pgmq-compatible SQL
 * (src/dev/pgmq_compat.sql): the same calls on two fresh databases of one server must
 * give the same columns, types and values (times compared relative to the transaction's
 * now()), raise in the same cases with the same SQLSTATE (messages may differ: the compat
 * SQL names the queue and what is wrong), and leave the same tables behind.
 *
 * Skipped, with a warning, only when the server has no pgmq extension to create.
 */
import assert from "node:assert/strict";
import { pairTest, realPgmqMissing, type Side } from "./_support/pgmq_pair.ts";
import type { Sql } from "../src/db/connect.ts";

const missing = await realPgmqMissing();
if (missing) console.warn(`pgmq_differential_test skipped: ${missing}`);
const ignore = missing !== undefined;

/** pgmq's catalogue entries: every function with arguments, defaults, result and flags. */
const FUNCTIONS = `
  select p.proname as name,
         pg_get_function_arguments(p.oid) as arguments,
         pg_get_function_result(p.oid) as result,
         p.provolatile::text as volatility, p.proisstrict as strict,
         p.prosecdef as security_definer, p.proretset as returns_set
  from pg_proc p
  where p.pronamespace = 'pgmq'::regnamespace
  order by 1, 2`;

/** Every relation and composite type in schema pgmq with columns, persistence and grants. */
const RELATIONS = `
  select c.relname, c.relkind::text, c.relpersistence::text, c.relacl::text,
         (select string_agg(format('%s %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                   case when a.attnotnull then ' not null' else '' end,
                                   coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
                                   case a.attidentity when 'a' then ' identity always'
                                                      when 'd' then ' identity by default'
                                                      else '' end), ', ' order by a.attnum)
            from pg_attribute a
            left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
           where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
         (select string_agg(pg_get_constraintdef(k.oid), ', ' order by k.conname)
            from pg_constraint k where k.conrelid = c.oid) as constraints,
         (select string_agg(i.indexdef, ', ' order by i.indexname)
            from pg_indexes i where i.schemaname = 'pgmq' and i.tablename = c.relname) as indexes
  from pg_class c
  where c.relnamespace = 'pgmq'::regnamespace and c.relkind in ('r', 'p', 'S', 'c', 'u')
  order by c.relname`;

const MESSAGES = (table: string) =>
  `select msg_id, read_ct, enqueued_at, vt, message, headers from pgmq.${table} order by msg_id`;

/** Names of the pgmq functions the core calls: migrations, src/db and src/worker. */
async function pgmqFunctionsTheCoreCalls(): Promise<string[]> {
  const root = new URL("../", import.meta.url);
  const files: URL[] = [];
  const walk = async (dir: URL, keep: (name: string) => boolean) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory) await walk(url, keep);
      else if (keep(entry.name)) files.push(url);
    }
  };
  await walk(new URL("migrations/", root), (name) => name.endsWith(".sql"));
  await walk(new URL("src/db/", root), (name) => name.endsWith(".ts"));
  await walk(new URL("src/worker/", root), (name) => name.endsWith(".ts"));
  const names = new Set<string>();
  for (const file of files) {
    for (const match of (await Deno.readTextFile(file)).matchAll(/\bpgmq\.(\w+)\s*\(/g)) {
      names.add(match[1]);
    }
  }
  return [...names].sort();
}

pairTest("catalogue: pgmq's public functions, types and meta table are identical", async (pair) => {
  const [real, compat] = await pair.each(async ({ sql }) => [
    ...await sql.unsafe<{ name: string }[]>(FUNCTIONS),
  ]);
  // Private helpers (a leading underscore) may differ: pgmq's are about pg_partman and
  // extension membership, the compat SQL's about checking names and tables.
  const isPublic = (f: { name: string }) => !f.name.startsWith("_");
  assert.deepEqual(compat.filter(isPublic), real.filter(isPublic));

  const used = await pgmqFunctionsTheCoreCalls();
  for (const name of ["archive", "create", "read", "read_with_poll", "send", "set_vt"]) {
    assert.ok(used.includes(name), `the core calls pgmq.${name} (scan found ${used})`);
  }
  const publicNames = new Set(real.filter(isPublic).map((f) => f.name));
  assert.deepEqual(used.filter((name) => !publicNames.has(name)), []);

  await pair.same(RELATIONS);
  await pair.same(`
    select nspacl::text,
           (select array_agg(format('%s %s %s', defaclrole::regrole, defaclobjtype, defaclacl)
                             order by defaclobjtype)::text
              from pg_default_acl where defaclnamespace = 'pgmq'::regnamespace) as default_acl
    from pg_namespace where nspname = 'pgmq'`);
}, { ignore });

pairTest(
  "create, create_non_partitioned, create_unlogged: the same tables, indexes, meta rows",
  async (pair) => {
    await pair.same(`select pgmq.create('alpha')`);
    await pair.same(`select pgmq.create('alpha')`); // idempotent
    await pair.same(`select pgmq.create_non_partitioned('beta')`);
    await pair.same(`select pgmq.create_unlogged('gamma')`);
    await pair.same(`select pgmq.create('gamma')`); // stays unlogged
    await pair.same(`select pgmq.create('MixedCase')`);
    await pair.same(`select pgmq.create('mixedcase')`); // same tables, a second meta row
    await pair.same(`select pgmq.create(repeat('q', 47))`);
    // pgmq 1.5.1 refuses only $ ; -- and ' (and over-long names); tables are quoted.
    for (const name of ["bad-name", "with space", "1abc", "", "ünïcode"]) {
      await pair.same(`select pgmq.create('${name}')`);
      await pair.same(`select * from pgmq.send('${name}', '{"to": "${name}"}')`);
      await pair.same(`select msg_id, read_ct, message from pgmq.read('${name}', 30, 5)`);
    }
    await pair.same(RELATIONS);
    await pair.same(`select * from pgmq.meta order by queue_name`);
    await pair.same(`select * from pgmq.list_queues() order by queue_name`);
    await pair.same(`select count(*) from pgmq.list_queues()`);
  },
  { ignore },
);

pairTest("send and send_batch: delays, headers, named arguments, ids", async (pair) => {
  await pair.same(`select pgmq.create('s')`);
  const sends = [
    `pgmq.send('s', '{"n": 1}')`,
    `pgmq.send('s', '{"n": 2}', '{"trace": "abc"}'::jsonb)`,
    `pgmq.send('s', '{"n": 3}', 60)`,
    `pgmq.send('s', '{"n": 4}', now() + interval '1 hour')`,
    `pgmq.send('s', '{"n": 5}', '{"p": "high"}'::jsonb, 60)`,
    `pgmq.send('s', '{"n": 6}', '{"p": "low"}'::jsonb, now() - interval '5 seconds')`,
    `pgmq.send(queue_name => 's', msg => '{"n": 7}', delay => 0)`,
    `pgmq.send('s', null::jsonb)`,
    `pgmq.send_batch('s', array['{"b": 1}', '{"b": 2}']::jsonb[])`,
    `pgmq.send_batch('s', array['{"b": 3}']::jsonb[], 30)`,
    `pgmq.send_batch('s', array['{"b": 4}']::jsonb[], now() + interval '2 minutes')`,
    `pgmq.send_batch('s', array['{"b": 5}', '{"b": 6}']::jsonb[], array['{"h": 5}', '{"h": 6}']::jsonb[])`,
    `pgmq.send_batch('s', array['{"b": 7}']::jsonb[], array['{"h": 7}']::jsonb[], 15)`,
    `pgmq.send_batch('s', array['{"b": 8}']::jsonb[], array['{"h": 8}']::jsonb[], now())`,
    `pgmq.send_batch(queue_name => 's', msgs => array['{"b": 9}']::jsonb[], delay => 5)`,
    // Arrays of different lengths are padded with NULLs, as pgmq's lock-step unnest does.
    `pgmq.send_batch('s', array['{"b": 10}', '{"b": 11}']::jsonb[], array['{"h": 10}']::jsonb[])`,
    `pgmq.send_batch('s', array['{"b": 12}']::jsonb[], array['{"h": 12}', '{"h": 13}']::jsonb[])`,
    `pgmq.send_batch('s', '{}'::jsonb[])`,
    `pgmq.send_batch('s', null::jsonb[])`,
  ];
  for (const call of sends) {
    const sent = await pair.same(`select * from ${call} as id`);
    assert.deepEqual(sent.columns, ["id bigint"]);
  }
  const stored = await pair.same(MESSAGES("q_s"));
  assert.equal(stored.rows.length, 21);
  await pair.same(`select pg_typeof(pgmq.send('s', '1')), pg_typeof(pgmq.send_batch('s', '{}'))`);
}, { ignore });

pairTest("read, conditional read, set_vt and pop", async (pair) => {
  await pair.same(`select pgmq.create('r')`);
  await pair.same(`select * from pgmq.send_batch('r', array[
    '{"kind": "a", "n": 1}', '{"kind": "b", "n": 2}', '{"kind": "a", "n": 3}',
    '{"kind": "b", "n": 4, "extra": {"deep": true}}', '[1, 2]', '"scalar"']::jsonb[])`);
  await pair.same(`select * from pgmq.send('r', '{"kind": "hidden"}', 300)`);
  await pair.same(`select * from pgmq.read('r', 30, 0)`);
  const two = await pair.same(`select * from pgmq.read('r', 30, 2) order by msg_id`);
  assert.deepEqual(two.columns, [
    "msg_id bigint",
    "read_ct integer",
    "enqueued_at timestamp with time zone",
    "vt timestamp with time zone",
    "message jsonb",
    "headers jsonb",
  ]);
  assert.equal(two.rows.length, 2);
  await pair.same(`select * from pgmq.read('r', 30, 10, '{"kind": "b"}') order by msg_id`);
  await pair.same(`select * from pgmq.read('r', 30, 10, '{"extra": {"deep": true}}')`);
  await pair.same(`select * from pgmq.read(queue_name => 'r', vt => 0, qty => 1,
                                            conditional => '{}')`);
  await pair.same(`select * from pgmq.read('r', 45, 10, null) order by msg_id`);
  await pair.same(`select * from pgmq.read('r', 30, 10)`); // nothing visible
  await pair.same(MESSAGES("q_r"));

  await pair.same(`select * from pgmq.set_vt('r', 1, 0)`);
  await pair.same(`select * from pgmq.set_vt(queue_name => 'r', msg_id => 2, vt => 120)`);
  await pair.same(`select * from pgmq.set_vt('r', 7, -10)`);
  await pair.same(`select * from pgmq.set_vt('r', 999999, 10)`);
  await pair.same(`select * from pgmq.set_vt('r', null, 10)`);
  await pair.same(`select * from pgmq.read('r', 10, 10) order by msg_id`);

  await pair.same(`select * from pgmq.send_batch('r', array['"p1"', '"p2"']::jsonb[])`);
  const popped = await pair.same(`select * from pgmq.pop('r')`);
  assert.equal(popped.rows.length, 1);
  await pair.same(`select * from pgmq.pop(queue_name => 'r')`);
  await pair.same(`select * from pgmq.pop('r')`);
  await pair.same(MESSAGES("q_r"));
  await pair.same(MESSAGES("a_r"));
}, { ignore });

pairTest("archive and delete, single and batch, and purge_queue", async (pair) => {
  await pair.same(`select pgmq.create('arc')`);
  await pair.same(`select * from pgmq.send_batch('arc', array['"a"', '"b"', '"c"', '"d"', '"e"',
    '"f"', '"g"', '"h"']::jsonb[], array['{"h": 1}']::jsonb[])`);
  await pair.same(`select * from pgmq.read('arc', 30, 1)`);
  await pair.same(`select pgmq.archive('arc', 1::bigint)`);
  await pair.same(`select pgmq.archive('arc', 1::bigint)`);
  await pair.same(`select pgmq.archive(queue_name => 'arc', msg_id => 999999::bigint)`);
  await pair.same(`select * from pgmq.archive('arc', array[3, 2, 999999]::bigint[]) order by 1`);
  await pair.same(`select * from pgmq.archive('arc', '{}'::bigint[])`);
  await pair.same(`select * from pgmq.archive('arc', null::bigint[])`);
  await pair.same(`
    select msg_id, read_ct, enqueued_at, archived_at, vt, message, headers,
           archived_at = now() as archived_now
    from pgmq.a_arc order by msg_id`);

  await pair.same(`select pgmq.delete('arc', 4::bigint)`);
  await pair.same(`select pgmq.delete('arc', 4::bigint)`);
  await pair.same(`select * from pgmq.delete('arc', array[6, 5, 1, 999999]::bigint[]) order by 1`);
  await pair.same(`select * from pgmq.delete(queue_name => 'arc', msg_ids => array[7]::bigint[])`);
  await pair.same(`select * from pgmq.delete('arc', '{}'::bigint[])`);
  await pair.same(MESSAGES("q_arc"));

  await pair.same(`select * from pgmq.send('arc', '"later"', 60)`);
  await pair.same(`select pgmq.purge_queue('arc')`);
  await pair.same(`select pgmq.purge_queue('arc')`);
  await pair.same(MESSAGES("q_arc"));
  await pair.same(`select count(*) from pgmq.a_arc`);
  // The id sequence survives a purge.
  await pair.same(`select * from pgmq.send('arc', '"after"')`);
}, { ignore });

pairTest("metrics and metrics_all", async (pair) => {
  await pair.same(`select pgmq.create('m1')`);
  await pair.same(`select pgmq.create_unlogged('m2')`);
  const empty = await pair.same(`select * from pgmq.metrics('m1')`);
  assert.deepEqual(empty.columns, [
    "queue_name text",
    "queue_length bigint",
    "newest_msg_age_sec integer",
    "oldest_msg_age_sec integer",
    "total_messages bigint",
    "scrape_time timestamp with time zone",
    "queue_visible_length bigint",
  ]);
  await pair.same(`select * from pgmq.send_batch('m1', array['1', '2', '3', '4', '5']::jsonb[])`);
  await pair.same(`select * from pgmq.send('m1', '6', 60)`);
  await pair.same(`select * from pgmq.read('m1', 60, 2) order by 1`);
  await pair.same(`select pgmq.archive('m1', 5::bigint), pgmq.delete('m1', 4::bigint)`);
  await pair.same(`select * from pgmq.send('m2', '"only"')`);
  // Sent in the same transaction as the scrape: ages 0, counted, scrape_time = now().
  await pair.same(`
    with sent as (select * from pgmq.send('m2', '"same transaction"'))
    select m.*, m.scrape_time = now() as scraped_at_now from sent, pgmq.metrics('m2') m`);
  await pair.same(`select * from pgmq.metrics('m1')`);
  await pair.same(`select * from pgmq.metrics(queue_name => 'm2')`);
  await pair.same(`select * from pgmq.metrics_all() order by queue_name`);
  await pair.same(`select pg_typeof(pgmq.metrics('m1'))::text`);
}, { ignore });

pairTest("read_with_poll: a short idle poll, messages present, no time to poll", async (pair) => {
  await pair.same(`select pgmq.create('poll')`);
  // Nothing arrives within max_poll_seconds: no rows.
  await pair.same(`select * from pgmq.read_with_poll('poll', 30, 5, 1, 50)`);
  await pair.same(`select * from pgmq.send_batch('poll', array['{"k": 1}', '{"k": 2}',
    '{"k": 3}']::jsonb[])`);
  // max_poll_seconds <= 0: pgmq checks its deadline before the first read.
  await pair.same(`select * from pgmq.read_with_poll('poll', 30, 5, 0)`);
  await pair.same(`select * from pgmq.read_with_poll('no_such_queue', 30, 5, 0)`);
  await pair.same(`select * from pgmq.read_with_poll('poll', 30, 1)`);
  await pair.same(`select * from pgmq.read_with_poll('poll', 30, 5, 1, 10, '{"k": 3}')`);
  await pair.same(`select * from pgmq.read_with_poll(queue_name => 'poll', vt => 30, qty => 5,
    max_poll_seconds => 1, poll_interval_ms => 20)`);
}, { ignore });

pairTest("drop_queue: dropped tables and meta rows, the deprecated overload", async (pair) => {
  await pair.same(`select pgmq.create('gone')`);
  await pair.same(`select * from pgmq.send('gone', '{}')`);
  await pair.same(`select pgmq.drop_queue('gone')`);
  await pair.same(`select to_regclass('pgmq.q_gone')::text, to_regclass('pgmq.a_gone')::text,
    (select count(*) from pgmq.meta where queue_name = 'gone')`);
  await pair.same(`select pgmq.create('old')`);
  const deprecated = await pair.same(`select pgmq.drop_queue('old', false)`);
  assert.equal(deprecated.warnings, 1);
  await pair.same(`select pgmq.create('gone')`); // a fresh queue
  await pair.same(`select * from pgmq.send('gone', '{}')`);
  // Table names are lower case, meta rows keep the spelling: only the exact one goes.
  await pair.same(`select pgmq.create('MixedCase')`);
  await pair.same(`select pgmq.create('mixedcase')`);
  await pair.same(`select pgmq.drop_queue('mixedcase')`);
  await pair.same(`select * from pgmq.meta order by queue_name`);
  await pair.same(RELATIONS);
  await pair.same(`select pgmq.detach_archive('gone')`);
}, { ignore });

pairTest("errors: both raise, with the same SQLSTATE", async (pair) => {
  const missingQueue = [
    `select * from pgmq.send('nope', '{}')`,
    `select * from pgmq.send('nope', '{}', '{}'::jsonb, 5)`,
    `select * from pgmq.send_batch('nope', array['{}']::jsonb[])`,
    `select * from pgmq.read('nope', 30, 1)`,
    `select * from pgmq.read_with_poll('nope', 30, 1, 1, 10)`,
    `select * from pgmq.pop('nope')`,
    `select * from pgmq.set_vt('nope', 1, 10)`,
    `select pgmq.archive('nope', 1::bigint)`,
    `select * from pgmq.archive('nope', array[1]::bigint[])`,
    `select pgmq.delete('nope', 1::bigint)`,
    `select * from pgmq.delete('nope', array[1]::bigint[])`,
    `select pgmq.purge_queue('nope')`,
    `select * from pgmq.metrics('nope')`,
    `select pgmq.drop_queue('nope')`,
    `select pgmq.detach_archive('nope')`,
    `select * from pgmq.send(repeat('q', 48), '{}')`,
  ];
  for (const text of missingQueue) {
    assert.equal((await pair.bothRaise(text)).code, "42P01", text);
  }

  const badNames = ["a$b", "a;b", "a--b", "it''s"];
  for (const name of badNames) {
    for (const call of [`pgmq.create('${name}')`, `pgmq.send('${name}', '{}')`]) {
      assert.equal((await pair.bothRaise(`select ${call}`)).code, "P0001", call);
    }
  }
  assert.equal((await pair.bothRaise(`select pgmq.create(repeat('q', 48))`)).code, "P0001");
  assert.equal(
    (await pair.bothRaise(`select pgmq.create_unlogged(repeat('q', 60))`)).code,
    "P0001",
  );
  assert.equal((await pair.bothRaise(`select pgmq.create(null)`)).code, "22004");
  assert.equal((await pair.bothRaise(`select pgmq.create_partitioned('part')`)).code, "P0001");
  await pair.same(`select count(*) from pgmq.meta`);
  await pair.same(RELATIONS); // nothing half-created

  await pair.same(`select pgmq.create('e')`);
  await pair.same(`select * from pgmq.send('e', '{}')`);
  // A NULL visibility timeout cannot be stored; a negative qty is not a LIMIT.
  await pair.bothRaise(`select * from pgmq.read('e', null, 1)`);
  await pair.bothRaise(`select * from pgmq.read('e', 30, -1)`);
  await pair.bothRaise(`select * from pgmq.set_vt('e', 1, null)`);
  await pair.bothRaise(`select * from pgmq.send('e', '{}', null::timestamptz)`);
  await pair.bothRaise(`select pgmq.send('e')`); // no such overload
  await pair.same(MESSAGES("q_e"));
}, { ignore });

/** Reads until the queue is empty; each claim stays uncommitted a moment so readers overlap. */
async function drain(reader: Sql, queue: string): Promise<number[]> {
  const got: number[] = [];
  while (true) {
    const batch = await reader.begin(async (tx) => {
      const rows = await tx<{ msg_id: number }[]>`select msg_id from pgmq.read(${queue}, 60, 7)`;
      await tx`select pg_sleep(0.002)`;
      return rows;
    });
    if (batch.length === 0) return got;
    got.push(...batch.map((m) => m.msg_id));
  }
}

pairTest("two concurrent readers never get the same message, and get them all", async (pair) => {
  await pair.same(`select pgmq.create('race')`);
  const sent = await pair.same(`select * from pgmq.send_batch('race',
    array(select jsonb_build_object('i', i) from generate_series(1, 200) as i))`);
  const ids = sent.rows.map(([id]) => id as number);
  const race = async (side: Side) => {
    const readers = [side.connect(1), side.connect(1)];
    await Promise.all(readers.map((reader) => reader`select 1`)); // both connected first
    const [a, b] = await Promise.all(readers.map((reader) => drain(reader, "race")));
    return { a, b };
  };
  // One side at a time, so each race has both cores.
  for (const side of pair.sides) {
    const { a, b } = await race(side);
    assert.ok(a.length > 0 && b.length > 0, `${side.name}: both readers got work`);
    assert.deepEqual(a.filter((id) => b.includes(id)), [], `${side.name}: overlap`);
    assert.deepEqual([...a, ...b].sort((x, y) => x - y), ids, `${side.name}: all read`);
  }
  await pair.same(`select count(*), max(read_ct), min(read_ct) from pgmq.q_race`);
}, { ignore });
