import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { runSupabase } from "./_support/supabase_cli.ts";
import { applyMigrations, CORE_MIGRATIONS_DIR, readMigrations } from "../src/db/migrate.ts";
import { installPgmq } from "../src/dev/pgmq.ts";

/** A Supabase project folder whose supabase/migrations holds the core migrations. */
async function projectWithCoreMigrations(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "edgeflow-push-" });
  await Deno.mkdir(`${dir}/supabase/migrations`, { recursive: true });
  for (const migration of await readMigrations()) {
    const file = `${migration.version}_${migration.name}.sql`;
    await Deno.copyFile(new URL(file, CORE_MIGRATIONS_DIR), `${dir}/supabase/migrations/${file}`);
  }
  return dir;
}

dbTest(
  "supabase db push applies the core migrations, then finds nothing to do",
  async ({ sql, url }) => {
    await installPgmq(sql);
    const dir = await projectWithCoreMigrations();
    try {
      const dbUrl = `${url}?sslmode=disable`;
      const first = await runSupabase(["db", "push", "--db-url", dbUrl, "--yes"], dir);
      assert.equal(first.code, 0, first.output);
      for (const migration of await readMigrations()) {
        assert.match(
          first.output,
          new RegExp(`Applying migration ${migration.version}_${migration.name}\\.sql`),
        );
      }
      const second = await runSupabase(["db", "push", "--db-url", dbUrl, "--yes"], dir);
      assert.equal(second.code, 0, second.output);
      assert.match(second.output, /Remote database is up to date/);
      // edgeflow's own runner reads the same bookkeeping table and agrees.
      assert.deepEqual(await applyMigrations(sql, await readMigrations()), []);
      const [{ flows }] = await sql`select count(*)::int as flows from pgflow.flows`;
      assert.equal(flows, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { template: "empty" },
);

dbTest("after edgeflow's runner, supabase db push has nothing to apply", async ({ sql, url }) => {
  await installPgmq(sql);
  await applyMigrations(sql, await readMigrations());
  const dir = await projectWithCoreMigrations();
  try {
    const pushed = await runSupabase(
      ["db", "push", "--db-url", `${url}?sslmode=disable`, "--yes"],
      dir,
    );
    assert.equal(pushed.code, 0, pushed.output);
    assert.match(pushed.output, /Remote database is up to date/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}, { template: "empty" });
