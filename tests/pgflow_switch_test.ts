/**
 * Switching in place: edgeflow's migrations applied to a database where
 * pgflow 0.10.0 or 0.14.1 is installed, with runs mid-flight, take it over:
 * flows, runs, states, tasks, queued messages, workers and grants are kept,
 * and the runs finish under edgeflow with correct outputs.
 */
import assert from "node:assert/strict";
import { dbTest, type TestDb } from "./_support/db.ts";
import { getRun, runUntilIdle, stepStatuses } from "./_support/drive.ts";
import {
  driveMidFlight,
  FIXTURES_DIR,
  fixturesMissing,
  installPgflow,
  type MidFlight,
  PGFLOW_RELEASES,
  pgflowMigrationFiles,
  type PgflowRelease,
  psqlFile,
  WORKER,
} from "./_support/pgflow_fixture.ts";
import { applyMigrations, CORE_MIGRATIONS_DIR, readMigrations } from "../src/db/migrate.ts";
import { runSupabase } from "./_support/supabase_cli.ts";
import type { Json } from "../src/db/types.ts";

const missing = fixturesMissing();
if (missing) console.warn(`pgflow_switch_test: ${missing}`);

// Roles are cluster-wide and test files run in parallel: one name per process and release.
const roleFor = (release: PgflowRelease) =>
  `pgflow_reader_${Deno.pid}_${release.replaceAll(".", "_")}`;

async function grantToReader(db: TestDb, role: string) {
  await db.sql.unsafe(`
    create role ${role} nologin;
    grant usage on schema pgflow to ${role};
    grant select on pgflow.runs to ${role};
    grant execute on function pgflow.start_flow(text, jsonb, uuid) to ${role};`);
}

async function queueCounts(db: TestDb) {
  const [row] = await db.sql`
    select (select count(*) from pgmq.q_etl)::int as etl, (select count(*) from pgmq.q_fragile)::int as fragile`;
  return row;
}

const HANDLERS = {
  fetch: (input: Json) => ({ fetched: ((input as { run: { n: number } }).run.n) * 10 }),
  audit: () => "ok",
  items: () => [1, 2, 3],
  double: (input: Json) => (input as number) * 2,
  sum: (input: Json) => (input as { double: number[] }).double.reduce((a, b) => a + b, 0),
};

async function assertTakenOver(db: TestDb, runs: MidFlight, role: string, queuedBefore: number) {
  const { sql } = db;
  assert.equal((await sql`select to_regnamespace('pgflow_pre_edgeflow') as s`)[0].s, null);
  const [{ comment }] = await sql`select obj_description('pgflow'::regnamespace) as comment`;
  assert.match(comment, /^edgeflow/);

  // Definitions, with pgflow's options.
  const steps = await sql`
    select step_slug, step_type, step_index, deps_count, opt_max_attempts from pgflow.steps
    where flow_slug = 'etl' order by step_index`;
  assert.deepEqual(steps.map((s) => [s.step_slug, s.step_type, s.deps_count]), [
    ["fetch", "single", 0],
    ["audit", "single", 0],
    ["items", "single", 1],
    ["double", "map", 1],
    ["sum", "single", 1],
  ]);
  assert.equal(steps[1].opt_max_attempts, 2);
  const [etl] = await sql`select * from pgflow.flows where flow_slug = 'etl'`;
  assert.deepEqual([etl.opt_max_attempts, etl.opt_base_delay, etl.opt_timeout], [3, 1, 30]);

  // Runs and states as pgflow left them.
  assert.deepEqual(await stepStatuses(sql, runs.partial), {
    audit: "completed",
    double: "started",
    fetch: "completed",
    items: "completed",
    sum: "created",
  });
  const mapTasks = await sql`
    select task_index, status, attempts_count, output, error_message from pgflow.step_tasks
    where run_id = ${runs.partial} and step_slug = 'double' order by task_index`;
  assert.deepEqual(mapTasks.map((t) => [t.status, t.attempts_count, t.output]), [
    ["completed", 1, 2],
    ["queued", 1, null],
    ["queued", 0, null],
  ]);
  assert.equal(mapTasks[1].error_message, "flaky once");
  assert.equal((await getRun(sql, runs.queued)).status, "started");

  // The failed run's open task is cancelled and its message gone.
  assert.equal((await getRun(sql, runs.failed)).status, "failed");
  const fragile = await sql`
    select step_slug, status from pgflow.step_tasks where run_id = ${runs.failed} order by step_slug`;
  assert.deepEqual(fragile.map((t) => [t.step_slug, t.status]), [["a", "failed"], [
    "b",
    "cancelled",
  ]]);
  assert.deepEqual(await queueCounts(db), { etl: queuedBefore, fragile: 0 });

  // Workers and keep-alive registrations.
  const [worker] = await sql`select * from pgflow.workers where worker_id = ${WORKER}`;
  assert.equal(worker.function_name, "etl-worker");
  const [tracked] = await sql`select * from pgflow.worker_functions`;
  assert.equal(tracked.function_name, "etl-worker");

  // The user's grants, on edgeflow's objects of the same names.
  const [grants] = await sql`
    select has_schema_privilege(${role}, 'pgflow', 'usage') as schema,
           has_table_privilege(${role}, 'pgflow.runs', 'select') as runs,
           has_table_privilege(${role}, 'pgflow.step_tasks', 'select') as tasks,
           has_function_privilege(${role}, 'pgflow.start_flow(text, jsonb, uuid)', 'execute') as start,
           has_function_privilege(${role}, 'pgflow.complete_task(uuid, text, int, jsonb)', 'execute') as complete`;
  assert.deepEqual(grants, {
    schema: true,
    runs: true,
    tasks: false,
    start: true,
    complete: false,
  });
}

async function finishRuns(db: TestDb, runs: MidFlight) {
  const { sql } = db;
  // The retrying task's backoff is in the future: move the engine's clock past it.
  await sql`select pgflow.advance_clock('1 minute')`;
  await runUntilIdle(sql, "etl", HANDLERS);
  const partial = await getRun(sql, runs.partial);
  assert.equal(partial.status, "completed");
  // Map task 0 kept pgflow's output (2); 1 and 2 ran here.
  assert.deepEqual(partial.output, { audit: "ok", sum: 12 });
  const queued = await getRun(sql, runs.queued);
  assert.equal(queued.status, "completed");
  assert.deepEqual(queued.output, { audit: "ok", sum: 12 });
  const [fetched] = await sql`
    select output from pgflow.step_tasks where run_id = ${runs.queued} and step_slug = 'fetch'`;
  assert.deepEqual(fetched.output, { fetched: 20 });
  const [{ retried }] = await sql`
    select attempts_count as retried from pgflow.step_tasks
    where run_id = ${runs.partial} and step_slug = 'double' and task_index = 1`;
  assert.equal(retried, 2);
}

async function dropRole(db: TestDb, role: string) {
  await db.sql.unsafe(`drop owned by ${role}; drop role ${role}`);
}

for (const release of PGFLOW_RELEASES) {
  dbTest(
    `pgflow ${release} with runs mid-flight switches in place through edgeflow's migrator`,
    async (db) => {
      const role = roleFor(release);
      await installPgflow(db.url, release);
      const runs = await driveMidFlight(db.sql);
      await grantToReader(db, role);
      try {
        const before = await queueCounts(db);
        await applyMigrations(db.sql, await readMigrations());
        await assertTakenOver(db, runs, role, before.etl);
        await finishRuns(db, runs);
      } finally {
        await dropRole(db, role);
      }
    },
    { template: "empty", ignore: Boolean(missing) },
  );
}

dbTest(
  "pgflow 0.14.1 applied by supabase db push switches in place when edgeflow's migrations are added",
  async (db) => {
    const release = "0.14.1";
    const role = `${roleFor(release)}_push`;
    const dir = await Deno.makeTempDir({ prefix: "edgeflow-switch-" });
    const migrations = `${dir}/supabase/migrations`;
    const dbUrl = `${db.url}?sslmode=disable`;
    try {
      await Deno.mkdir(migrations, { recursive: true });
      // The project as a pgflow user has it: pgflow's migrations, pushed.
      await psqlFile(db.url, new URL("supabase_standins.sql", FIXTURES_DIR));
      for (const file of pgflowMigrationFiles(release)) {
        await Deno.copyFile(file, `${migrations}/${file.pathname.split("/").pop()}`);
      }
      const first = await runSupabase(["db", "push", "--db-url", dbUrl, "--yes"], dir);
      assert.equal(first.code, 0, first.output);
      const runs = await driveMidFlight(db.sql);
      await grantToReader(db, role);
      try {
        const before = await queueCounts(db);
        // The user adds edgeflow's migrations to the project and pushes again.
        for (const migration of await readMigrations()) {
          const file = `${migration.version}_${migration.name}.sql`;
          await Deno.copyFile(new URL(file, CORE_MIGRATIONS_DIR), `${migrations}/${file}`);
        }
        const second = await runSupabase(["db", "push", "--db-url", dbUrl, "--yes"], dir);
        assert.equal(second.code, 0, second.output);
        await assertTakenOver(db, runs, role, before.etl);
        await finishRuns(db, runs);
        // edgeflow's own runner agrees that nothing is left to apply.
        assert.deepEqual(await applyMigrations(db.sql, await readMigrations()), []);
      } finally {
        await dropRole(db, role);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { template: "empty", ignore: Boolean(missing) },
);

dbTest(
  "pgflow 0.14.1 flows with step conditions and skipped steps switch in place and run on",
  async (db) => {
    const { sql } = db;
    await installPgflow(db.url, "0.14.1");
    // Compiled the way pgflow 0.14 compiles a flow with conditions.
    await sql.unsafe(`
      select pgflow.create_flow('orders', max_attempts => 1);
      select pgflow.add_step(flow_slug => 'orders', step_slug => 'check');
      select pgflow.add_step(flow_slug => 'orders', step_slug => 'discount',
        required_input_pattern => '{"vip": true}', when_unmet => 'skip');
      select pgflow.add_step(flow_slug => 'orders', step_slug => 'fraud', deps_slugs => array['check'],
        forbidden_input_pattern => '{"check": {"ok": true}}', when_unmet => 'skip-cascade',
        when_exhausted => 'skip');
      select pgflow.add_step(flow_slug => 'orders', step_slug => 'ship',
        deps_slugs => array['check', 'discount']);`);
    // A run under pgflow: discount is skipped at once, check waits in the queue.
    const [{ run_id: runId }] = await sql`
      select run_id from pgflow.start_flow('orders', '{"vip": false}')`;
    const [skipped] = await sql`
      select status, skip_reason from pgflow.step_states where run_id = ${runId} and step_slug = 'discount'`;
    assert.deepEqual(skipped, { status: "skipped", skip_reason: "condition_unmet" });

    await applyMigrations(sql, await readMigrations());
    assert.equal((await sql`select to_regnamespace('pgflow_pre_edgeflow') as s`)[0].s, null);
    const steps = await sql`
      select step_slug, required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted
      from pgflow.steps where flow_slug = 'orders' order by step_index`;
    assert.deepEqual(steps.map((s) => Object.values(s)), [
      ["check", null, null, "skip", "fail"],
      ["discount", { vip: true }, null, "skip", "fail"],
      ["fraud", null, { check: { ok: true } }, "skip-cascade", "skip"],
      ["ship", null, null, "skip", "fail"],
    ]);
    const [state] = await sql`
      select status, skip_reason, skipped_at is not null as stamped from pgflow.step_states
      where run_id = ${runId} and step_slug = 'discount'`;
    assert.deepEqual(state, { status: "skipped", skip_reason: "condition_unmet", stamped: true });

    // The run goes on under edgeflow: fraud's condition is unmet, ship runs without discount.
    let shipInput: Json = null;
    await runUntilIdle(sql, "orders", {
      check: () => ({ ok: true }),
      ship: (input) => (shipInput = input, "shipped"),
    });
    assert.deepEqual(shipInput, { run: { vip: false }, check: { ok: true } });
    const run = await getRun(sql, runId);
    assert.equal(run.status, "completed");
    assert.deepEqual(run.output, { ship: "shipped" });
    assert.deepEqual(await stepStatuses(sql, runId), {
      check: "completed",
      discount: "skipped",
      fraud: "skipped",
      ship: "completed",
    });
  },
  { template: "empty", ignore: Boolean(missing) },
);
