import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, getRun, runUntilIdle } from "./_support/drive.ts";
import { hasPgCron, startSystemPostgres, systemPostgresBin } from "./_support/system_postgres.ts";
import { applyMigrations, readMigrations } from "../src/db/migrate.ts";
import { connect } from "../src/db/connect.ts";
import { installPgmq } from "../src/dev/pgmq.ts";
import { startFlow } from "../src/db/runs.ts";

dbTest("migrations apply to an empty database once; re-running is a no-op", async ({ sql }) => {
  assert.ok(["compat", "extension"].includes(await installPgmq(sql)));
  const migrations = await readMigrations();
  assert.ok(migrations.length >= 1);
  assert.deepEqual(await applyMigrations(sql, migrations), migrations.map((m) => m.version));
  assert.deepEqual(await applyMigrations(sql, migrations), []);
  const recorded =
    await sql`select version, name from supabase_migrations.schema_migrations order by version`;
  assert.deepEqual(recorded.map((r) => r.version), migrations.map((m) => m.version));
  const [{ tables }] = await sql`
    select array_agg(tablename::text order by tablename) as tables from pg_tables where schemaname = 'pgflow'`;
  assert.deepEqual(tables, [
    "clock",
    "deps",
    "flows",
    "runs",
    "step_states",
    "step_tasks",
    "steps",
    "worker_functions",
    "workers",
  ]);
}, { template: "empty" });

dbTest(
  "the first migration creates the pgmq extension, or fails clearly and leaves nothing without it",
  async ({ sql }) => {
    const [available] = await sql`select 1 from pg_available_extensions where name = 'pgmq'`;
    if (available) {
      await applyMigrations(sql, await readMigrations());
      const [{ version }] = await sql`
        select extversion as version from pg_extension where extname = 'pgmq'`;
      assert.match(version, /^1\.(5|[6-9])\./);
      return;
    }
    await assert.rejects(
      applyMigrations(sql, await readMigrations()),
      /migration 20261125000000_edgeflow_schema\.sql failed: edgeflow needs pgmq 1\.5 or newer/,
    );
    const [{ schema }] = await sql`select to_regnamespace('pgflow') as schema`;
    assert.equal(schema, null);
  },
  { template: "empty" },
);

dbTest("migration file names are checked", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/2024_bad.sql`, "select 1");
    await assert.rejects(
      readMigrations(new URL(`file://${dir}/`)),
      /migration file 2024_bad\.sql .* must be named <14-digit timestamp>_<name>\.sql/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const pg15 = systemPostgresBin(15);
if (!pg15) {
  console.warn(
    "skipping the PostgreSQL 15 test: /usr/lib/postgresql/15 is missing (apt-get install postgresql-15)",
  );
}
Deno.test({
  name: "the core installs (with pg_cron when present) and runs a flow on PostgreSQL 15",
  ignore: !pg15,
  fn: async () => {
    const pgCron = hasPgCron(pg15!);
    const server = await startSystemPostgres(pg15!, { pgCron });
    const sql = connect(server.url, { max: 2 });
    try {
      const [{ version }] = await sql`select current_setting('server_version_num')::int as version`;
      assert.ok(version >= 150000 && version < 160000, `server is 15.x, got ${version}`);
      if (pgCron) await sql`create extension pg_cron`;
      await installPgmq(sql);
      await applyMigrations(sql, await readMigrations());
      await define(
        sql,
        `select pgflow.create_flow('pg15');
         select pgflow.add_step('pg15', 'list');
         select pgflow.add_step('pg15', 'each', deps_slugs => array['list'], step_type => 'map');
         select pgflow.add_step('pg15', 'total', deps_slugs => array['each']);`,
      );
      const run = await startFlow(sql, { flowSlug: "pg15", input: 3 });
      await runUntilIdle(sql, "pg15", {
        list: () => [1, 2, 3],
        each: (n) => (n as number) * 10,
        total: (input) => (input as { each: number[] }).each.reduce((a, b) => a + b, 0),
      });
      assert.deepEqual((await getRun(sql, run.run_id)).output, { total: 60 });
      if (pgCron) {
        // pg_cron (Debian ships 1.4, without second intervals) got the keep-alive job.
        const jobs = await sql`select jobname, command from cron.job`;
        assert.deepEqual(jobs.map((j) => [j.jobname, j.command]), [[
          "edgeflow_ensure_workers",
          "select pgflow.ensure_workers()",
        ]]);
      }
    } finally {
      await sql.end();
      await server.stop();
    }
  },
});
