/**
 * With `search_path = ''`, PostgreSQL still looks up type and relation names in
 * the session's pg_temp first, and any role may create objects there. A
 * client with the README's grants plants `pg_temp.jsonb` (a domain whose check
 * calls its own function) and calls a SECURITY DEFINER function: if the
 * function's body resolves a type name through pg_temp, the check runs with
 * the owner's rights. These tests attack every definer in schema pgflow.
 */
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_support/db.ts";
import { define } from "./_support/drive.ts";
import type { Sql } from "../src/db/connect.ts";

// Roles are cluster-wide and test files run in parallel: one name per process.
const ATTACKER = `temp_attacker_${Deno.pid}`;

/**
 * One attacking call per SECURITY DEFINER function of schema pgflow (`$RUN` is
 * an existing run id). The test fails for a definer missing here, so a new one
 * cannot escape the attack.
 */
const DEFINER_CALLS: Record<string, string> = {
  "pgflow.start_flow(text,jsonb,uuid)":
    "select count(*) from pgflow.start_flow('sec', '{}'::pg_catalog.jsonb)",
  "pgflow.start_flow_with_states(text,jsonb,uuid)":
    "select pgflow.start_flow_with_states('sec', '{}'::pg_catalog.jsonb)",
  "pgflow.get_run_with_states(uuid)": "select pgflow.get_run_with_states('$RUN'::pg_catalog.uuid)",
  // Each run operation on the run, in an order where each one does its work.
  "pgflow.cancel_run(uuid,text)":
    "select pgflow.cancel_run('$RUN'::pg_catalog.uuid, 'attack'::pg_catalog.text)",
  "pgflow.resume_run(uuid)": "select pgflow.resume_run('$RUN'::pg_catalog.uuid)",
  "pgflow.restart_run(uuid)":
    "select pgflow.cancel_run('$RUN'::pg_catalog.uuid); select pgflow.restart_run('$RUN'::pg_catalog.uuid)",
  "pgflow.start_flows(text,jsonb[],uuid[])":
    "select count(*) from pgflow.start_flows('sec', array['{}'::pg_catalog.jsonb, '{}'::pg_catalog.jsonb])",
};

/** The README's client grants, to the attacker. */
const CLIENT_GRANTS = `
  grant usage on schema pgflow to ${ATTACKER};
  grant execute on function pgflow.start_flow(text, jsonb, uuid) to ${ATTACKER};
  grant execute on function pgflow.start_flow_with_states(text, jsonb, uuid) to ${ATTACKER};
  grant execute on function pgflow.get_run_with_states(uuid) to ${ATTACKER};
  grant execute on function pgflow.cancel_run(uuid, text) to ${ATTACKER};
  grant execute on function pgflow.resume_run(uuid) to ${ATTACKER};
  grant execute on function pgflow.restart_run(uuid) to ${ATTACKER};
  grant execute on function pgflow.start_flows(text, jsonb[], uuid[]) to ${ATTACKER};
  grant select on pgflow.runs, pgflow.step_states to ${ATTACKER};`;

/**
 * In the attacker's own session: a function that makes the attacker SUPERUSER
 * when it runs as someone else, and a pg_temp domain named like every base type
 * of pg_catalog (jsonb, text, uuid, int4, ...) whose check calls it.
 */
const PLANT = `
  create function pg_temp.evil() returns pg_catalog.bool
  language plpgsql set search_path = pg_catalog, pg_temp as $$
  begin
    if current_user <> '${ATTACKER}'::pg_catalog.name then
      execute 'alter role ${ATTACKER} superuser';
    end if;
    return true;
  end $$;
  do $$
  declare
    v_type pg_catalog.name;
  begin
    for v_type in
      select t.typname from pg_catalog.pg_type t
      where t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace and t.typtype = 'b'
        and t.typcategory <> 'A' and t.typname !~ '^_'
    loop
      begin
        execute pg_catalog.format(
          'create domain pg_temp.%I as pg_catalog.%I check (pg_temp.evil())', v_type, v_type);
      exception when others then
        null; -- some base types cannot carry a domain
      end;
    end loop;
  end $$;`;

async function isSuperuser(sql: Sql): Promise<boolean> {
  const [row] = await sql`select rolsuper from pg_roles where rolname = ${ATTACKER}`;
  return row.rolsuper;
}

/** Runs `statement` as the attacker in a session with the pg_temp plants. */
async function attack(db: TestDb, statement: string): Promise<void> {
  const session = db.connect(1);
  try {
    await session.unsafe(`set role ${ATTACKER}`);
    await session.unsafe(PLANT);
    const [{ n }] = await session.unsafe(
      "select count(*)::int as n from pg_catalog.pg_type where typnamespace = pg_catalog.pg_my_temp_schema()",
    );
    assert.ok(n > 40, `planted ${n} pg_temp domains`);
    await session.unsafe(statement);
  } finally {
    await session.end();
  }
}

async function withAttacker(sql: Sql, fn: () => Promise<void>) {
  await sql.unsafe(`create role ${ATTACKER} nologin; ${CLIENT_GRANTS}`);
  try {
    await fn();
  } finally {
    await sql.unsafe(`drop owned by ${ATTACKER}; drop role ${ATTACKER}`);
  }
}

dbTest(
  "a pg_temp type planted by a client never runs inside any SECURITY DEFINER function",
  async (db) => {
    const { sql } = db;
    await define(sql, `select pgflow.create_flow('sec'); select pgflow.add_step('sec', 'a');`);
    const [{ run_id: runId }] = await sql`select run_id from pgflow.start_flow('sec', '{}')`;
    await withAttacker(sql, async () => {
      // Control: the same plants do escalate through a definer with search_path = ''.
      await sql.unsafe(`
        create function public.vulnerable_probe() returns pg_catalog.bool
        language plpgsql security definer set search_path = '' as
        $$ begin return pg_catalog.jsonb_typeof('{}'::jsonb) is not null; end $$;
        grant execute on function public.vulnerable_probe() to ${ATTACKER};`);
      await attack(db, "select public.vulnerable_probe()");
      assert.equal(
        await isSuperuser(sql),
        true,
        "control: the attack works on a vulnerable definer",
      );
      await sql.unsafe(
        `alter role ${ATTACKER} nosuperuser; drop function public.vulnerable_probe()`,
      );

      const definers = await sql`
        select p.oid::regprocedure::text as signature
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'pgflow' and p.prosecdef order by 1`;
      assert.ok(definers.length >= 3);
      for (const { signature } of definers) {
        const call = DEFINER_CALLS[signature];
        assert.ok(
          call,
          `no attack call for SECURITY DEFINER ${signature}: add one to DEFINER_CALLS`,
        );
        await attack(db, call.replaceAll("$RUN", runId));
        assert.equal(
          await isSuperuser(sql),
          false,
          `${signature} ran a pg_temp plant as its owner`,
        );
      }
    });
  },
);

dbTest(
  "every pgflow function pins search_path to pg_catalog, then pg_temp last",
  async ({ sql }) => {
    const rows = await sql`
    select p.oid::regprocedure::text as signature, p.proconfig
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'pgflow' order by 1`;
    assert.ok(rows.length > 30);
    for (const row of rows) {
      // pg_temp named explicitly is searched where it is named (last), not first. The hot
      // entry points also keep key lookups from becoming scans and plan each statement once
      // (ARCHITECTURE.md).
      const pinned = (row.proconfig as string[]).filter((c) =>
        c !== "enable_seqscan=off" && c !== "plan_cache_mode=force_generic_plan"
      );
      assert.deepEqual(pinned, ["search_path=pg_catalog, pg_temp"], row.signature);
    }
  },
);
