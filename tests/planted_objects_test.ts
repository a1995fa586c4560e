/**
 * The core calls Supabase's realtime.send, pg_net's net.http_post and reads
 * Vault's vault.decrypted_secrets with the rights of whoever changes state
 * (the worker, or a SECURITY DEFINER function). On a server without those
 * components a role with CREATE on the database can plant them; the core must
 * use them only when they and their schema belong to a superuser or to the
 * owner of schema pgflow.
 */
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_support/db.ts";
import { define, runUntilIdle } from "./_support/drive.ts";
import { eventually } from "./_support/eventually.ts";
import { startFlow } from "../src/db/runs.ts";
import type { Sql } from "../src/db/connect.ts";

// Roles are cluster-wide and test files run in parallel: one name per process.
const PLANTER = `planter_${Deno.pid}`;

const DIAMOND = `
  select pgflow.create_flow('diamond');
  select pgflow.add_step('diamond', 'a');
  select pgflow.add_step('diamond', 'b', deps_slugs => array['a']);
  select pgflow.add_step('diamond', 'c', deps_slugs => array['a']);
  select pgflow.add_step('diamond', 'd', deps_slugs => array['b', 'c']);`;
const HANDLERS = { a: () => 1, b: () => 2, c: () => 3, d: () => 4 };

/** Body of a planted function: records who ran it and tries to make the planter SUPERUSER. */
const PAYLOAD = `
  insert into public.planted_calls (who) values (current_user);
  if current_user <> '${PLANTER}' then execute 'alter role ${PLANTER} superuser'; end if;`;

/** Runs `plant` as a role whose only privilege is CREATE on the database. */
async function asPlanter(db: TestDb, plant: string, fn: () => Promise<void>) {
  const { sql } = db;
  await sql.unsafe(`
    create role ${PLANTER} nologin;
    grant create on database ${db.name} to ${PLANTER};
    create table public.planted_calls (who text);
    grant insert on public.planted_calls to public;`);
  const session = db.connect(1);
  try {
    await session.unsafe(`set role ${PLANTER}; ${plant}`);
    await fn();
  } finally {
    await session.end();
    await sql.unsafe(`drop owned by ${PLANTER} cascade; drop role ${PLANTER}`);
  }
}

async function assertNeverRan(sql: Sql) {
  const calls = await sql`select who from public.planted_calls`;
  assert.deepEqual(calls.map((c) => c.who), [], "the planted code ran");
  const [{ rolsuper }] = await sql`select rolsuper from pg_roles where rolname = ${PLANTER}`;
  assert.equal(rolsuper, false);
}

/** Runs the diamond flow as the worker would, returning the pg_notify events of the run. */
async function runWithListener(db: TestDb): Promise<string[]> {
  const listener = db.connect(1);
  const runId = crypto.randomUUID();
  const events: string[] = [];
  await listener.listen(`pgflow:run:${runId}`, (p) => events.push(JSON.parse(p).event));
  await startFlow(db.sql, { flowSlug: "diamond", input: {}, runId });
  await runUntilIdle(db.sql, "diamond", HANDLERS);
  await eventually("run:completed over pg_notify", () => events.includes("run:completed"));
  return events;
}

dbTest(
  "a realtime.send planted by an unprivileged role never runs; events fall back to pg_notify",
  async (db) => {
    await define(db.sql, DIAMOND);
    const plant = `
      create schema realtime;
      create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
      returns void language plpgsql as $$ begin ${PAYLOAD} end $$;`;
    await asPlanter(db, plant, async () => {
      assert.equal((await runWithListener(db)).length, 10);
      await assertNeverRan(db.sql);
      // A superuser's function in the planter's schema: the schema owner could swap what it uses.
      await db.sql.unsafe(
        `alter function realtime.send(jsonb, text, text, boolean) owner to current_user`,
      );
      assert.equal((await runWithListener(db)).length, 10);
      await assertNeverRan(db.sql);
    });
  },
);

dbTest("Supabase's realtime.send, installed by a superuser, gets every event", async (db) => {
  // The Supabase stand-ins define realtime.send and realtime.messages as Supabase has them.
  const psql = await new Deno.Command("psql", {
    args: [
      db.url,
      "-q",
      "-v",
      "ON_ERROR_STOP=1",
      "-f",
      "/work/shared/fixtures/supabase_standins.sql",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(psql.success, new TextDecoder().decode(psql.stderr));
  await define(db.sql, DIAMOND);
  const run = await startFlow(db.sql, { flowSlug: "diamond", input: { x: 1 } });
  await runUntilIdle(db.sql, "diamond", HANDLERS);
  const sent = await db.sql`
    select event, topic, private, payload from realtime.messages order by inserted_at, payload->>'event'`;
  assert.equal(sent.length, 10);
  const completed = sent.find((m) => m.event === "run:completed")!;
  assert.equal(completed.topic, `pgflow:run:${run.run_id}`);
  assert.equal(completed.private, false);
  // Realtime's own authorization applies on this path, so the payload is complete.
  assert.deepEqual(completed.payload.output, { d: 4 });
  assert.deepEqual(sent.find((m) => m.event === "run:started")!.payload.input, { x: 1 });
});

dbTest("a planted net.http_post is never invoked by ensure_workers", async (db) => {
  await db.sql.unsafe(`
    create schema vault;
    create table vault.decrypted_secrets (name text, decrypted_secret text);
    insert into vault.decrypted_secrets values
      ('edgeflow_functions_url', 'https://abc.supabase.co/functions/v1/');`);
  const plant = `
    create schema net;
    create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
                                  headers jsonb default '{}', timeout_milliseconds int default 5000)
    returns bigint language plpgsql as $$ begin ${PAYLOAD} return 1; end $$;`;
  await asPlanter(db, plant, async () => {
    await db.sql`select pgflow.track_worker_function('w')`;
    const [invoked] = await db.sql`select function_name, request_id from pgflow.ensure_workers()`;
    assert.deepEqual([invoked.function_name, invoked.request_id], ["w", null]);
    await assertNeverRan(db.sql);
  });
});

dbTest("a planted vault.decrypted_secrets is never read", async (db) => {
  const plant = `
    create schema vault;
    create function vault.leak() returns text language plpgsql as $$ begin ${PAYLOAD} return 'x'; end $$;
    create view vault.decrypted_secrets as
      select 'edgeflow_functions_url'::text as name, 'https://evil.example/' || vault.leak() as decrypted_secret;`;
  await asPlanter(db, plant, async () => {
    const [{ local }] = await db.sql`select pgflow.is_local() as local`;
    // The planted URL is not read (it would say remote); nothing else says local.
    assert.equal(local, false, "no trusted functions URL and no local JWT secret: not local");
    await assertNeverRan(db.sql);
  });
});

dbTest("trusted owners: the owner of schema pgflow and superusers, no one else", async (db) => {
  // Roles are cluster-wide: names per process, as PLANTER.
  const plain = `trust_plain_${Deno.pid}`;
  const superuser = `trust_super_${Deno.pid}`;
  const member = `trust_member_${Deno.pid}`;
  const [{ bootstrap }] = await db.sql`select rolname as bootstrap from pg_roles where oid = 10`;
  await db.sql.unsafe(`
    create role ${plain} nologin;
    create role ${superuser} nologin superuser;
    -- A member of a superuser role is not a superuser itself (with SET it could become one,
    -- but not every grant gives SET).
    create role ${member} nologin;
    grant "${bootstrap}" to ${member};`);
  try {
    const trusted = async (owner: string, schemaOwner: string) => {
      const [{ ok }] = await db.sql`
        select pgflow._trusted_owners(
          (select oid from pg_roles where rolname = ${owner}),
          (select oid from pg_roles where rolname = ${schemaOwner})) as ok`;
      return ok;
    };
    const [{ pgflowOwner }] = await db.sql`
      select pg_get_userbyid(nspowner) as "pgflowOwner" from pg_namespace where nspname = 'pgflow'`;
    assert.equal(await trusted(pgflowOwner, pgflowOwner), true);
    assert.equal(await trusted(superuser, pgflowOwner), true);
    assert.equal(await trusted(member, superuser), false, "a member of the bootstrap superuser");
    assert.equal(await trusted(plain, pgflowOwner), false, "an untrusted object owner");
    assert.equal(await trusted(superuser, plain), false, "an untrusted schema owner");
  } finally {
    await db.sql.unsafe(`drop role ${member}; drop role ${superuser}; drop role ${plain}`);
  }
});
