/**
 * edgeflow's pgmq-compatible SQL (src/dev/pgmq_compat.sql): the pgmq 1.5 API
 * the core and the workers rely on. Each test installs it on an empty database
 * (the template has the real extension when the server offers it);
 * tests/pgmq_differential_test.ts compares it with the real pgmq call by call.
 *
 * JSON goes in as `${JSON.stringify(v)}::text::jsonb`: postgres.js would
 * JSON-encode a string bound straight to a jsonb parameter a second time.
 */
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import { installPgmq, PGMQ_COMPAT_SQL } from "../src/dev/pgmq.ts";
import type { Sql } from "../src/db/connect.ts";

interface Message {
  msg_id: number;
  read_ct: number;
  enqueued_at: Date;
  vt: Date;
  message: unknown;
  headers: unknown;
}

/** A test on a fresh database holding only the compat SQL. */
function compatTest(name: string, fn: (db: TestDb) => Promise<void>): void {
  dbTest(name, async (db) => {
    assert.equal(await installPgmqCompat(db.sql), "compat");
    await fn(db);
  }, { template: "empty" });
}

async function installPgmqCompat(sql: Sql): Promise<"compat"> {
  await sql.unsafe(await Deno.readTextFile(PGMQ_COMPAT_SQL));
  return "compat";
}

const MESSAGE_COLUMNS = ["msg_id", "read_ct", "enqueued_at", "vt", "message", "headers"];

async function read(sql: Sql, queue: string, vt: number, qty: number): Promise<Message[]> {
  return [...await sql<Message[]>`select * from pgmq.read(${queue}, ${vt}::int, ${qty}::int)`];
}

async function send(sql: Sql, queue: string, message: unknown, delay = 0): Promise<number> {
  const [row] = await sql<{ id: number }[]>`
    select id from pgmq.send(${queue}, ${
    JSON.stringify(message)
  }::text::jsonb, ${delay}::int) as id`;
  return row.id;
}

async function sendBatch(sql: Sql, queue: string, messages: unknown[]): Promise<number[]> {
  const rows = await sql<{ id: number }[]>`
    select id from pgmq.send_batch(
      ${queue}, ${messages.map((m) => JSON.stringify(m))}::text[]::jsonb[]) as id`;
  return rows.map((r) => r.id);
}

async function count(sql: Sql, table: string): Promise<number> {
  const [row] = await sql.unsafe<{ n: number }[]>(`select count(*)::int as n from pgmq.${table}`);
  return row.n;
}

/** Rejects with a PostgresError whose message matches `pattern` (and code, when given). */
async function rejectsWith(promise: Promise<unknown>, pattern: RegExp, code?: string) {
  await assert.rejects(promise, (error: Error & { code?: string }) => {
    assert.match(error.message, pattern);
    if (code) assert.equal(error.code, code);
    return true;
  });
}

compatTest(
  "create is idempotent, list_queues/meta describe the queue, drop_queue removes it",
  async ({ sql }) => {
    await sql`select pgmq.create('alpha')`;
    await sql`select pgmq.create('alpha')`;
    await sql`select pgmq.create_unlogged('beta')`;

    const queues =
      await sql`select * from pgmq.list_queues() where queue_name in ('alpha', 'beta')`;
    assert.deepEqual(queues.columns.map((c) => c.name), [
      "queue_name",
      "is_partitioned",
      "is_unlogged",
      "created_at",
    ]);
    assert.deepEqual(
      queues.map((q) => [q.queue_name, q.is_partitioned, q.is_unlogged]),
      [["alpha", false, false], ["beta", false, true]],
    );
    assert.ok(queues[0].created_at instanceof Date);
    const [meta] = await sql`select count(*)::int as n from pgmq.meta where queue_name = 'alpha'`;
    assert.equal(meta.n, 1);

    const columns = await sql`
    select table_name, column_name, data_type, is_nullable, is_identity
    from information_schema.columns
    where table_schema = 'pgmq' and table_name in ('q_alpha', 'a_alpha')
    order by table_name, ordinal_position`;
    const describe = (table: string) =>
      columns.filter((c) => c.table_name === table)
        .map((c) => `${c.column_name} ${c.data_type} ${c.is_nullable} ${c.is_identity}`);
    assert.deepEqual(describe("q_alpha"), [
      "msg_id bigint NO YES",
      "read_ct integer NO NO",
      "enqueued_at timestamp with time zone NO NO",
      "vt timestamp with time zone NO NO",
      "message jsonb YES NO",
      "headers jsonb YES NO",
    ]);
    assert.deepEqual(describe("a_alpha").map((c) => c.split(" ")[0]), [
      "msg_id",
      "read_ct",
      "enqueued_at",
      "archived_at",
      "vt",
      "message",
      "headers",
    ]);
    const indexes = await sql`
    select tablename, indexdef from pg_indexes
    where schemaname = 'pgmq' and tablename in ('q_alpha', 'a_alpha') and indexdef not like '%UNIQUE%'`;
    assert.deepEqual(indexes.map((i) => [i.tablename, /\((\w+)/.exec(i.indexdef)?.[1]]).sort(), [
      ["a_alpha", "archived_at"],
      ["q_alpha", "vt"],
    ]);
    const [unlogged] =
      await sql`select relpersistence from pg_class where oid = 'pgmq.q_beta'::regclass`;
    assert.equal(unlogged.relpersistence, "u");

    await send(sql, "alpha", { a: 1 });
    const [dropped] = await sql`select pgmq.drop_queue('alpha') as ok`;
    assert.equal(dropped.ok, true);
    const [gone] = await sql`
    select to_regclass('pgmq.q_alpha') as q, to_regclass('pgmq.a_alpha') as a,
           (select count(*)::int from pgmq.list_queues() where queue_name = 'alpha') as listed`;
    assert.deepEqual({ ...gone }, { q: null, a: null, listed: 0 });
    // As pgmq 1.5.1: dropping a queue that does not exist raises.
    await rejectsWith(
      sql`select pgmq.drop_queue('alpha')`,
      /queue "alpha" does not exist/,
      "42P01",
    );

    // Creating after a drop starts a fresh queue.
    await sql`select pgmq.create('alpha')`;
    assert.equal(await count(sql, "q_alpha"), 0);
  },
);

compatTest(
  "read hides a message for vt seconds and counts reads; it reappears after vt",
  async ({ sql }) => {
    await sql`select pgmq.create('jobs')`;
    const id = await send(sql, "jobs", { hello: "world" });
    const before = Date.now();

    const first = await sql<Message[]>`select * from pgmq.read('jobs', 1, 10)`;
    assert.deepEqual(first.columns.map((c) => c.name), MESSAGE_COLUMNS);
    assert.equal(first.length, 1);
    assert.equal(first[0].msg_id, id);
    assert.equal(first[0].read_ct, 1);
    assert.deepEqual(first[0].message, { hello: "world" });
    assert.equal(first[0].headers, null);
    assert.ok(first[0].vt.getTime() > first[0].enqueued_at.getTime());
    // vt is about 1 s after the read.
    const vtOffset = first[0].vt.getTime() - before;
    assert.ok(vtOffset > 500 && vtOffset < 5000, `vt offset ${vtOffset} ms`);

    assert.deepEqual(await read(sql, "jobs", 1, 10), []);
    const again = await eventually("the message to become visible again", async () => {
      const rows = await read(sql, "jobs", 30, 10);
      return rows.length ? rows : undefined;
    });
    assert.equal(again[0].msg_id, id);
    assert.equal(again[0].read_ct, 2);
    assert.ok(Date.now() - before >= 900, "reappeared before its vt");
    assert.deepEqual(await read(sql, "jobs", 30, 10), []);

    // qty limits the batch; oldest ids first.
    const ids = await sendBatch(sql, "jobs", [1, 2, 3, 4, 5]);
    const two = await read(sql, "jobs", 30, 2);
    assert.deepEqual(two.map((m) => m.msg_id), ids.slice(0, 2));
    const rest = await sql<Message[]>`
    select * from pgmq.read(queue_name => 'jobs', vt => 30, qty => 10, conditional => '{}')`;
    assert.deepEqual(rest.map((m) => m.msg_id), ids.slice(2));
  },
);

compatTest(
  "send overloads: headers, integer and timestamptz delays, named arguments",
  async ({ sql }) => {
    await sql`select pgmq.create('s')`;
    const [plain] = await sql`select pgmq.send('s', '{"n": 1}'::jsonb) as id`;
    const [withHeaders] = await sql`
    select pgmq.send('s', '{"n": 2}'::jsonb, '{"trace": "abc"}'::jsonb) as id`;
    const [delayed] = await sql`select pgmq.send('s', '{"n": 3}'::jsonb, 60) as id`;
    const [at] = await sql`
    select pgmq.send('s', '{"n": 4}'::jsonb, now() + interval '1 hour') as id`;
    const [both] = await sql`
    select pgmq.send('s', '{"n": 5}'::jsonb, '{"p": "high"}'::jsonb, 60) as id`;
    const [bothAt] = await sql`
    select pgmq.send('s', '{"n": 6}'::jsonb, '{"p": "low"}'::jsonb, now() - interval '1 second') as id`;
    const [named] = await sql`
    select pgmq.send(queue_name => 's', msg => '{"n": 7}'::jsonb, delay => 0) as id`;
    const ids = [plain, withHeaders, delayed, at, both, bothAt, named].map((r) => r.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    assert.equal(new Set(ids).size, 7);

    const rows = await sql`
    select message->>'n' as n, headers, vt > clock_timestamp() + interval '30 seconds' as hidden
    from pgmq.q_s order by msg_id`;
    assert.deepEqual(rows.map((r) => [Number(r.n), r.headers, r.hidden]), [
      [1, null, false],
      [2, { trace: "abc" }, false],
      [3, null, true],
      [4, null, true],
      [5, { p: "high" }, true],
      [6, { p: "low" }, false],
      [7, null, false],
    ]);
    const visible = await read(sql, "s", 30, 10);
    assert.deepEqual(visible.map((m) => (m.message as { n: number }).n), [1, 2, 6, 7]);
    assert.deepEqual(visible[1].headers, { trace: "abc" });
  },
);

compatTest("set_vt hides or reveals a message and returns it", async ({ sql }) => {
  await sql`select pgmq.create('v')`;
  const id = await send(sql, "v", { x: 1 });
  const [claimed] = await read(sql, "v", 300, 1);
  assert.equal(claimed.msg_id, id);
  assert.deepEqual(await read(sql, "v", 300, 1), []);

  const updated = await sql<Message[]>`select * from pgmq.set_vt('v', ${id}::bigint, 0)`;
  assert.deepEqual(updated.columns.map((c) => c.name), MESSAGE_COLUMNS);
  assert.equal(updated.length, 1);
  assert.equal(updated[0].msg_id, id);
  assert.equal(updated[0].read_ct, 1);
  assert.ok(updated[0].vt.getTime() < claimed.vt.getTime());
  const [reread] = await read(sql, "v", 300, 1);
  assert.equal(reread.msg_id, id);
  assert.equal(reread.read_ct, 2);

  // Pushing vt into the future hides a visible message.
  const other = await send(sql, "v", { x: 2 });
  const [hidden] = await sql<Message[]>`
    select * from pgmq.set_vt(queue_name => 'v', msg_id => ${other}::bigint, vt => 120)`;
  assert.ok(hidden.vt.getTime() > Date.now() + 60_000);
  assert.equal(hidden.read_ct, 0);
  assert.deepEqual(await read(sql, "v", 30, 10), []);

  assert.deepEqual([...await sql`select * from pgmq.set_vt('v', 999999, 10)`], []);
});

compatTest(
  "archive and delete, single and array; archived rows land in a_<name>",
  async ({ sql }) => {
    await sql`select pgmq.create('arc')`;
    const ids = await sendBatch(sql, "arc", ["a", "b", "c", "d", "e", "f"]);
    await read(sql, "arc", 30, 1); // read_ct 1 on the first message

    const [single] = await sql`select pgmq.archive('arc', ${ids[0]}::bigint) as ok`;
    assert.equal(single.ok, true);
    const [missing] = await sql`select pgmq.archive('arc', 999999::bigint) as ok`;
    assert.equal(missing.ok, false);
    const many = await sql`
    select * from pgmq.archive('arc', ${[ids[2], ids[1], 999999]}::bigint[]) as id`;
    assert.deepEqual(many.map((r) => r.id), [ids[1], ids[2]]);

    const archived = await sql`
    select msg_id, read_ct, message, headers, archived_at, enqueued_at, vt
    from pgmq.a_arc order by msg_id`;
    assert.deepEqual(archived.map((r) => [r.msg_id, r.read_ct, r.message]), [
      [ids[0], 1, "a"],
      [ids[1], 0, "b"],
      [ids[2], 0, "c"],
    ]);
    for (const row of archived) {
      assert.ok(row.archived_at instanceof Date);
      assert.ok(row.archived_at.getTime() >= row.enqueued_at.getTime());
    }

    const [deleted] = await sql`select pgmq.delete('arc', ${ids[3]}::bigint) as ok`;
    assert.equal(deleted.ok, true);
    const [deletedAgain] = await sql`select pgmq.delete('arc', ${ids[3]}::bigint) as ok`;
    assert.equal(deletedAgain.ok, false);
    const deletedMany = await sql`
    select * from pgmq.delete('arc', ${[ids[5], ids[4], ids[0], 999999]}::bigint[]) as id`;
    assert.deepEqual(deletedMany.map((r) => r.id), [ids[4], ids[5]]);

    assert.equal(await count(sql, "q_arc"), 0);
    assert.equal(await count(sql, "a_arc"), 3);
    assert.deepEqual([...await sql`select * from pgmq.archive('arc', '{}'::bigint[])`], []);
  },
);

compatTest("pop takes the oldest visible message off the queue", async ({ sql }) => {
  await sql`select pgmq.create('p')`;
  assert.deepEqual([...await sql`select * from pgmq.pop('p')`], []);
  const hidden = await send(sql, "p", { n: 0 }, 60);
  const first = await send(sql, "p", { n: 1 });
  const second = await send(sql, "p", { n: 2 });

  const popped = await sql<Message[]>`select * from pgmq.pop('p')`;
  assert.deepEqual(popped.columns.map((c) => c.name), MESSAGE_COLUMNS);
  assert.equal(popped.length, 1);
  assert.equal(popped[0].msg_id, first);
  assert.deepEqual(popped[0].message, { n: 1 });
  const [next] = await sql<Message[]>`select * from pgmq.pop(queue_name => 'p')`;
  assert.equal(next.msg_id, second);
  assert.deepEqual([...await sql`select * from pgmq.pop('p')`], []);
  const left = await sql`select msg_id from pgmq.q_p`;
  assert.deepEqual(left.map((r) => r.msg_id), [hidden]);
  assert.equal(await count(sql, "a_p"), 0);
});

compatTest(
  "purge_queue deletes every message, visible or not, and returns the count",
  async ({ sql }) => {
    await sql`select pgmq.create('pq')`;
    const ids = await sendBatch(sql, "pq", [1, 2, 3, 4]);
    await send(sql, "pq", 5, 60);
    await read(sql, "pq", 60, 1);
    await sql`select pgmq.archive('pq', ${ids[1]}::bigint)`;

    const [purged] = await sql`select pgmq.purge_queue('pq') as n`;
    assert.equal(purged.n, 4);
    assert.equal(await count(sql, "q_pq"), 0);
    assert.equal(await count(sql, "a_pq"), 1);
    const [empty] = await sql`select pgmq.purge_queue('pq') as n`;
    assert.equal(empty.n, 0);
  },
);

compatTest("send_batch returns ids in array order, with delays and headers", async ({ sql }) => {
  await sql`select pgmq.create('b')`;
  const payloads = Array.from({ length: 50 }, (_, i) => ({ i, tag: `m${49 - i}` }));
  const ids = await sendBatch(sql, "b", payloads);
  assert.equal(ids.length, 50);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], "ids ascend in array order");
  const stored = await sql`select msg_id, message from pgmq.q_b order by msg_id`;
  assert.deepEqual(stored.map((r) => r.msg_id), ids);
  assert.deepEqual(stored.map((r) => r.message), payloads);
  await sql`select pgmq.purge_queue('b')`;

  const delayed = await sql`
    select * from pgmq.send_batch('b', array['{"d": 1}', '{"d": 2}']::jsonb[], 60) as id`;
  assert.equal(delayed.length, 2);
  const at = await sql`
    select * from pgmq.send_batch('b', array['{"d": 3}']::jsonb[], now() + interval '1 hour') as id`;
  assert.equal(at.length, 1);
  assert.deepEqual(await read(sql, "b", 30, 10), []);

  const withHeaders = await sql`
    select * from pgmq.send_batch('b', array['{"h": 1}', '{"h": 2}']::jsonb[],
                                  array['{"t": "x"}', '{"t": "y"}']::jsonb[]) as id`;
  const headersDelayed = await sql`
    select * from pgmq.send_batch(queue_name => 'b', msgs => array['{"h": 3}']::jsonb[],
                                  headers => array['{"t": "z"}']::jsonb[], delay => 60) as id`;
  const headersAt = await sql`
    select * from pgmq.send_batch('b', array['{"h": 4}']::jsonb[], array['{"t": "w"}']::jsonb[],
                                  now() - interval '1 second') as id`;
  assert.equal(withHeaders.length + headersDelayed.length + headersAt.length, 4);
  const visible = await read(sql, "b", 30, 10);
  assert.deepEqual(visible.map((m) => [m.message, m.headers]), [
    [{ h: 1 }, { t: "x" }],
    [{ h: 2 }, { t: "y" }],
    [{ h: 4 }, { t: "w" }],
  ]);

  // Arrays of different lengths are padded with NULLs, as pgmq does.
  await sql`select pgmq.purge_queue('b')`;
  await sql`select * from pgmq.send_batch('b', array['1', '2']::jsonb[], array['{}']::jsonb[])`;
  await sql`select * from pgmq.send_batch('b', array['3']::jsonb[], array['{}', '{}']::jsonb[])`;
  const padded = await sql`select message, headers from pgmq.q_b order by msg_id`;
  assert.deepEqual(padded.map((r) => [r.message, r.headers]), [
    [1, {}],
    [2, null],
    [3, {}],
    [null, {}],
  ]);
  assert.deepEqual([...await sql`select * from pgmq.send_batch('b', '{}'::jsonb[])`], []);
});

compatTest("metrics and metrics_all report lengths, ages and totals", async ({ sql }) => {
  await sql`select pgmq.create('m1')`;
  await sql`select pgmq.create('m2')`;

  const empty = await sql`select * from pgmq.metrics('m1')`;
  assert.deepEqual(empty.columns.map((c) => c.name), [
    "queue_name",
    "queue_length",
    "newest_msg_age_sec",
    "oldest_msg_age_sec",
    "total_messages",
    "scrape_time",
    "queue_visible_length",
  ]);
  assert.deepEqual(
    { ...empty[0], scrape_time: undefined },
    {
      queue_name: "m1",
      queue_length: 0,
      newest_msg_age_sec: null,
      oldest_msg_age_sec: null,
      total_messages: 0,
      scrape_time: undefined,
      queue_visible_length: 0,
    },
  );
  assert.ok(empty[0].scrape_time instanceof Date);

  const ids = await sendBatch(sql, "m1", [1, 2, 3, 4, 5]);
  await send(sql, "m1", 6, 60);
  await read(sql, "m1", 60, 2);
  await sql`select pgmq.archive('m1', ${ids[4]}::bigint)`;
  await sql`select pgmq.delete('m1', ${ids[3]}::bigint)`;
  await send(sql, "m2", "only");

  const [m1] = await sql`select * from pgmq.metrics('m1')`;
  assert.equal(m1.queue_length, 4); // 6 sent, 1 archived, 1 deleted
  assert.equal(m1.queue_visible_length, 1); // 2 read, 1 delayed
  assert.equal(m1.total_messages, 6);
  assert.ok(m1.newest_msg_age_sec >= 0 && m1.newest_msg_age_sec <= 5);
  assert.ok(m1.oldest_msg_age_sec >= m1.newest_msg_age_sec);

  const all = await sql`select * from pgmq.metrics_all() where queue_name in ('m1', 'm2')`;
  assert.deepEqual(all.map((r) => [r.queue_name, r.queue_length, r.total_messages]), [
    ["m1", 4, 6],
    ["m2", 1, 1],
  ]);
});

compatTest("conditional read returns only messages containing the condition", async ({ sql }) => {
  await sql`select pgmq.create('c')`;
  const ids = await sendBatch(sql, "c", [
    { kind: "a", n: 1 },
    { kind: "b", n: 2 },
    { kind: "a", n: 3 },
    { kind: "b", n: 4, extra: { deep: true } },
    [1, 2],
    "scalar",
  ]);
  const bs = await sql<Message[]>`
    select * from pgmq.read('c', 30, 10, '{"kind": "b"}'::jsonb)`;
  assert.deepEqual(bs.map((m) => m.msg_id), [ids[1], ids[3]]);
  const deep = await sql<Message[]>`
    select * from pgmq.read('c', 30, 10, '{"extra": {"deep": true}}'::jsonb)`;
  assert.deepEqual([...deep], []); // already claimed by the read above
  const polled = await sql<Message[]>`
    select * from pgmq.read_with_poll('c', 30, 10, 1, 50, '{"kind": "a"}'::jsonb)`;
  assert.deepEqual(polled.map((m) => m.msg_id), [ids[0], ids[2]]);
  // The default condition '{}' matches every message, objects or not.
  const rest = await read(sql, "c", 30, 10);
  assert.deepEqual(rest.map((m) => m.msg_id), [ids[4], ids[5]]);
  assert.deepEqual(rest.map((m) => m.message), [[1, 2], "scalar"]);
});

compatTest("two concurrent readers never receive the same message", async ({ sql, connect }) => {
  await sql`select pgmq.create('race')`;
  const sent = await sendBatch(sql, "race", Array.from({ length: 200 }, (_, i) => ({ i })));
  const readers = [connect(1), connect(1)];
  await Promise.all(readers.map((reader) => reader`select 1`)); // both connected before the race

  const drain = async (reader: Sql): Promise<number[]> => {
    const got: number[] = [];
    while (true) {
      // Each claim stays uncommitted for a moment, so the readers overlap.
      const batch = await reader.begin(async (tx) => {
        const rows = await tx<Message[]>`select * from pgmq.read('race', 60, 7)`;
        await tx`select pg_sleep(0.002)`;
        return rows;
      });
      if (batch.length === 0) return got;
      got.push(...batch.map((m) => m.msg_id));
    }
  };
  const [a, b] = await Promise.all(readers.map(drain));

  assert.ok(a.length > 0 && b.length > 0, `both readers got work (${a.length}, ${b.length})`);
  const overlap = a.filter((id) => b.includes(id));
  assert.deepEqual(overlap, []);
  assert.deepEqual([...a, ...b].sort((x, y) => x - y), sent);
  const [row] = await sql`select count(*)::int as n, max(read_ct) as max from pgmq.q_race`;
  assert.deepEqual({ ...row }, { n: 200, max: 1 });
});

compatTest(
  "a reader skips messages another open transaction has claimed instead of waiting",
  async ({ sql, connect }) => {
    await sql`select pgmq.create('skip')`;
    const [first, second] = await sendBatch(sql, "skip", ["one", "two"]);
    const holder = connect(1);
    const other = connect(1);

    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let claimed!: (ids: number[]) => void;
    const claimedIds = new Promise<number[]>((resolve) => (claimed = resolve));
    const holding = holder.begin(async (tx) => {
      const rows = await tx<Message[]>`select * from pgmq.read('skip', 60, 1)`;
      claimed(rows.map((m) => m.msg_id));
      await released; // keeps the row lock and the uncommitted vt
    });

    assert.deepEqual(await claimedIds, [first]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = await Promise.race([
      read(other, "skip", 60, 10),
      new Promise<"blocked">((resolve) => timer = setTimeout(() => resolve("blocked"), 3000)),
    ]);
    clearTimeout(timer);
    release();
    await holding;
    assert.notEqual(got, "blocked", "the second reader waited for the first one's lock");
    assert.deepEqual((got as Message[]).map((m) => m.msg_id), [second]);
    assert.deepEqual(await read(other, "skip", 60, 10), []);
  },
);

compatTest(
  "read_with_poll returns soon after another connection sends a message",
  async ({ sql, connect }) => {
    await sql`select pgmq.create('poll')`;
    const poller = connect(1);

    // Nothing arrives: it waits about max_poll_seconds and returns no rows.
    const idleStart = Date.now();
    const idle = await poller`select * from pgmq.read_with_poll('poll', 30, 5, 1, 50)`;
    const idleMs = Date.now() - idleStart;
    assert.equal(idle.length, 0);
    assert.ok(idleMs >= 900 && idleMs < 3000, `idle poll took ${idleMs} ms`);

    const polling = poller<Message[]>`
    select * from pgmq.read_with_poll(
      queue_name => 'poll', vt => 30, qty => 5, max_poll_seconds => 10, poll_interval_ms => 50)`
      .then((rows) => ({ rows, at: Date.now() }));
    await eventually("the poller to be polling", async () => {
      const [row] = await sql`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and state = 'active'
        and query like '%pgmq.read_with_poll%'`;
      return row.n === 1;
    });
    const sentAt = Date.now();
    const id = await send(sql, "poll", { wake: "up" });
    const { rows, at } = await polling;
    const latency = at - sentAt;
    assert.deepEqual(rows.map((m) => [m.msg_id, m.read_ct, m.message]), [[id, 1, { wake: "up" }]]);
    assert.ok(latency < 2000, `read_with_poll returned ${latency} ms after the send`);

    // Messages already there: it returns at once.
    await sendBatch(sql, "poll", [1, 2]);
    const quickStart = Date.now();
    const quick = await poller`select * from pgmq.read_with_poll('poll', 30, 5)`;
    assert.equal(quick.length, 2);
    assert.ok(Date.now() - quickStart < 1000);
  },
);

compatTest("unknown queues and invalid queue names raise clear errors", async ({ sql }) => {
  const unknown = [
    sql`select * from pgmq.send('nope', '{}'::jsonb)`,
    sql`select * from pgmq.send_batch('nope', array['{}']::jsonb[])`,
    sql`select * from pgmq.read('nope', 30, 1)`,
    sql`select * from pgmq.read_with_poll('nope', 30, 1, 1, 10)`,
    sql`select * from pgmq.pop('nope')`,
    sql`select * from pgmq.set_vt('nope', 1, 10)`,
    sql`select pgmq.archive('nope', 1::bigint)`,
    sql`select * from pgmq.archive('nope', array[1]::bigint[])`,
    sql`select pgmq.delete('nope', 1::bigint)`,
    sql`select * from pgmq.delete('nope', array[1]::bigint[])`,
    sql`select pgmq.purge_queue('nope')`,
    sql`select * from pgmq.metrics('nope')`,
  ];
  unknown.push(sql`select pgmq.drop_queue('nope')`);
  for (const query of unknown) {
    await rejectsWith(query, /pgmq queue "nope" does not exist/, "42P01");
  }

  // pgmq refuses $, ; , -- and ' in names (raise_exception, P0001); tables are quoted.
  const bad = ["x'; drop table pgmq.meta; --", "a$b", "a;b", "a--b"];
  for (const name of bad) {
    await rejectsWith(sql`select pgmq.create(${name})`, /invalid pgmq queue name/, "P0001");
    await rejectsWith(
      sql`select * from pgmq.send(${name}, '{}'::jsonb)`,
      /invalid pgmq queue name/,
      "P0001",
    );
  }
  for (const name of ["bad-name", "bad name", "1abc", "ünïcode"]) {
    await sql`select pgmq.create(${name})`;
    const id = await send(sql, name, { to: name });
    const [message] = await read(sql, name, 30, 1);
    assert.equal(message.msg_id, id);
  }
  await rejectsWith(sql`select pgmq.create(null)`, /must not be NULL/, "22004");
  const longest = "q".repeat(47);
  await sql`select pgmq.create(${longest})`;
  await send(sql, longest, { ok: true });
  assert.equal(await count(sql, `q_${longest}`), 1);
  await rejectsWith(sql`select pgmq.create(${"q".repeat(48)})`, /too long/, "P0001");
  const [meta] = await sql`select count(*)::int as n from pgmq.meta where queue_name = ${longest}`;
  assert.equal(meta.n, 1);
});

compatTest("queue tables are named in lower case, as pgmq names them", async ({ sql }) => {
  await sql`select pgmq.create('MixedCase')`;
  await sql`select pgmq.create('mixedcase')`; // the same tables, a second meta row (as pgmq)
  const [tables] = await sql`
    select to_regclass('pgmq.q_mixedcase') is not null as q, to_regclass('pgmq.a_mixedcase') is not null as a`;
  assert.deepEqual({ ...tables }, { q: true, a: true });
  const queues =
    await sql`select queue_name from pgmq.list_queues() where lower(queue_name) = 'mixedcase'`;
  assert.deepEqual(queues.map((q) => q.queue_name).sort(), ["MixedCase", "mixedcase"]);
  const id = await send(sql, "MixedCase", { a: 1 });
  const [message] = await read(sql, "mixedcase", 30, 1);
  assert.equal(message.msg_id, id);
  const [dropped] = await sql`select pgmq.drop_queue('mixedcase') as ok`;
  assert.equal(dropped.ok, true);
  // Only the meta row spelled as given goes; the tables are gone for both spellings.
  const left = await sql`select queue_name from pgmq.meta where lower(queue_name) = 'mixedcase'`;
  assert.deepEqual(left.map((r) => r.queue_name), ["MixedCase"]);
  assert.equal((await sql`select to_regclass('pgmq.q_mixedcase') as q`)[0].q, null);
});

dbTest("the SQL installs on an empty database and can be run again", async ({ sql }) => {
  assert.equal(await installPgmqCompat(sql), "compat");
  assert.equal(await installPgmq(sql), "present");
  await sql`select pgmq.create('again')`;
  const id = await send(sql, "again", { kept: true });
  // Running the file a second time keeps queues and messages.
  await sql.unsafe(await Deno.readTextFile(PGMQ_COMPAT_SQL));
  const [message] = await read(sql, "again", 30, 1);
  assert.equal(message.msg_id, id);
  assert.equal(await count(sql, "meta"), 1);
}, { template: "empty" });
