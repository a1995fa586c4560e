import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { runSupabase } from "./_support/supabase_cli.ts";
import { expectedMigrations, migrationDrift, SUPABASE_DIR } from "../src/dev/supabase_project.ts";
import { installPgmq } from "../src/dev/pgmq.ts";

Deno.test("supabase/migrations holds exactly the core migrations and the compiled example flows", async () => {
  assert.deepEqual(await migrationDrift(), [], "run `deno task supabase:sync`");
});

dbTest(
  "supabase db push applies supabase/migrations to an empty database; a second push is a no-op",
  async ({ sql, url }) => {
    await installPgmq(sql);
    const project = `${SUPABASE_DIR}..`;
    const dbUrl = `${url}?sslmode=disable`;
    const first = await runSupabase(["db", "push", "--db-url", dbUrl, "--yes"], project);
    assert.equal(first.code, 0, first.output);
    for (const name of (await expectedMigrations()).keys()) {
      assert.match(first.output, new RegExp(`Applying migration ${name.replace(".", "\\.")}`));
    }
    const second = await runSupabase(["db", "push", "--db-url", dbUrl, "--yes"], project);
    assert.equal(second.code, 0, second.output);
    assert.match(second.output, /Remote database is up to date/);
    const flows = await sql`select flow_slug from pgflow.flows order by flow_slug`;
    assert.deepEqual(flows.map((f) => f.flow_slug), ["analyze_website", "word_stats"]);
  },
  { template: "empty" },
);
