import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define } from "./_support/drive.ts";
import type { Sql } from "../src/db/connect.ts";

const FUNCTIONS = [
  "select pgflow.create_flow('x')",
  "select pgflow.add_step('f', 'x')",
  "select pgflow.start_flow('f', '{}'::jsonb)",
  "select pgflow.start_flow_with_states('f', '{}'::jsonb)",
  "select pgflow.get_run_with_states(gen_random_uuid())",
  "select pgflow.start_tasks('f', array[1]::bigint[], gen_random_uuid())",
  "select pgflow.complete_task(gen_random_uuid(), 'a', 0, '1'::jsonb)",
  "select pgflow.fail_task(gen_random_uuid(), 'a', 0, 'x')",
  "select pgflow.is_valid_slug('a')",
  "select pgflow.calculate_retry_delay(1, 1)",
  "select pgflow.requeue_stalled_tasks()",
  "select pgflow.prune_data_older_than('1 day')",
  "select pgflow.ensure_flow_compiled('f', '{}'::jsonb)",
  "select pgflow.delete_flow_and_data('f')",
  "select pgflow.register_worker(gen_random_uuid(), 'f', 'fn')",
  "select pgflow.worker_heartbeat(gen_random_uuid())",
  "select pgflow.deprecate_workers()",
  "select pgflow.mark_worker_stopped(gen_random_uuid())",
  "select pgflow.cancel_run(gen_random_uuid(), 'x')",
  "select pgflow.resume_run(gen_random_uuid())",
  "select pgflow.restart_run(gen_random_uuid())",
  "select pgflow.cancelled_runs(array[gen_random_uuid()])",
];
const TABLES = [
  "flows",
  "steps",
  "deps",
  "runs",
  "step_states",
  "step_tasks",
  "workers",
  "worker_functions",
];

/** Runs `fn` with a new role (no login, no grants), dropped afterwards. */
async function withRole(sql: Sql, prefix: string, fn: (role: string) => Promise<void>) {
  const role = `${prefix}_${Date.now()}`;
  await sql.unsafe(`create role ${role} nologin`);
  try {
    await fn(role);
  } finally {
    await sql.unsafe(`drop owned by ${role}; drop role ${role}`);
  }
}

/** Asserts that `role` gets "permission denied" for each statement. */
async function assertDenied(sql: Sql, role: string, statements: readonly string[]) {
  for (const statement of statements) {
    await assert.rejects(
      sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${role}`);
        await tx.unsafe(statement);
      }),
      /permission denied/,
      statement,
    );
  }
}

dbTest(
  "a role without grants can neither call pgflow functions nor touch its tables",
  async ({ sql }) => {
    await define(sql, `select pgflow.create_flow('f'); select pgflow.add_step('f', 'a');`);
    await withRole(sql, "stranger", async (role) => {
      const everything = [...FUNCTIONS, ...TABLES.map((t) => `select * from pgflow.${t}`)];
      await assertDenied(sql, role, [
        ...everything,
        `insert into pgflow.flows (flow_slug) values ('sneaky')`,
        `delete from pgflow.runs`,
      ]);
      // Even with USAGE on the schema, nothing inside is granted.
      await sql.unsafe(`grant usage on schema pgflow to ${role}`);
      await assertDenied(sql, role, everything);
    });
  },
);

dbTest(
  "the documented client grants let a role start and watch runs, nothing more",
  async ({ sql }) => {
    await define(sql, `select pgflow.create_flow('f'); select pgflow.add_step('f', 'a');`);
    await withRole(sql, "client", async (role) => {
      // The grants README.md documents for a client role.
      await sql.unsafe(`
      grant usage on schema pgflow to ${role};
      grant execute on function pgflow.start_flow(text, jsonb, uuid) to ${role};
      grant execute on function pgflow.start_flow_with_states(text, jsonb, uuid) to ${role};
      grant execute on function pgflow.get_run_with_states(uuid) to ${role};
      grant select on pgflow.runs, pgflow.step_states to ${role};`);
      const result = await sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${role}`);
        const [{ state }] =
          await tx`select pgflow.start_flow_with_states('f', '{"a":1}'::jsonb) as state`;
        const [{ again }] =
          await tx`select pgflow.get_run_with_states(${state.run.run_id}::uuid) as again`;
        const runs = await tx`select run_id, status from pgflow.runs`;
        return { state, again, runs };
      });
      assert.equal(result.state.run.status, "started");
      assert.deepEqual(result.again, result.state);
      assert.equal(result.runs.length, 1);
      await assertDenied(sql, role, [
        "select pgflow.complete_task(gen_random_uuid(), 'a', 0, '1'::jsonb)",
        "select * from pgflow.step_tasks",
        "update pgflow.runs set status = 'completed'",
      ]);
    });
  },
);

dbTest(
  "a client role with only EXECUTE on the run operations cancels, resumes and restarts runs",
  async ({ sql }) => {
    await define(sql, `select pgflow.create_flow('f'); select pgflow.add_step('f', 'a');`);
    const [{ run_id: runId }] = await sql`select run_id from pgflow.start_flow('f', '{}')`;
    await withRole(sql, "operator", async (role) => {
      await sql.unsafe(`
      grant usage on schema pgflow to ${role};
      grant execute on function pgflow.cancel_run(uuid, text) to ${role};
      grant execute on function pgflow.resume_run(uuid) to ${role};
      grant execute on function pgflow.restart_run(uuid) to ${role};`);
      const statuses = await sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${role}`);
        const [cancelled] = await tx`select status from pgflow.cancel_run(${runId}::uuid, 'ops')`;
        const [resumed] = await tx`select status from pgflow.resume_run(${runId}::uuid)`;
        const [again] = await tx`select status from pgflow.cancel_run(${runId}::uuid)`;
        const [restarted] = await tx`
          select status, restart_of_run_id from pgflow.restart_run(${runId}::uuid)`;
        return [cancelled.status, resumed.status, again.status, restarted];
      });
      assert.deepEqual(statuses.slice(0, 3), ["cancelled", "started", "cancelled"]);
      assert.deepEqual({ ...statuses[3] }, { status: "started", restart_of_run_id: runId });
      await assertDenied(sql, role, [
        "select pgflow.start_flow('f', '{}'::jsonb)",
        "select pgflow.cancelled_runs(array[gen_random_uuid()])",
        "select * from pgflow.runs",
      ]);
    });
  },
);

// search_path of every function: tests/pg_temp_escalation_test.ts.
dbTest("only the client entry points are security definers", async ({ sql }) => {
  const rows = await sql`
    select p.proname, p.prosecdef
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'pgflow' order by p.proname`;
  assert.ok(rows.length > 10);
  const definers = rows.filter((r) => r.prosecdef).map((r) => r.proname);
  assert.deepEqual(definers, [
    "cancel_run",
    "get_run_with_states",
    "restart_run",
    "resume_run",
    "start_flow",
    "start_flow_with_states",
    "start_flows",
  ]);
});
