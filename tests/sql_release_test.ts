/**
 * The SQL engine's release model: sql/ is the source, migrations/ its
 * generated, hash-checked releases (src/dev/sql_release.ts).
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, getRun, runUntilIdle, takeTasks } from "./_support/drive.ts";
import { applyMigrations, readMigrations } from "../src/db/migrate.ts";
import { installPgmq } from "../src/dev/pgmq.ts";
import { completeTask } from "../src/db/tasks.ts";
import { startFlow } from "../src/db/runs.ts";
import { ENGINE_FILES, readManifest, releaseDrift, SQL_DIR } from "../src/dev/sql_release.ts";
import { sha256Hex } from "../src/db/manifest.ts";

Deno.test("migrations/ is what sql/ builds, and no released migration changed", async () => {
  assert.deepEqual(await releaseDrift(), [], "run `deno task sql:build`");
  const manifest = await readManifest();
  assert.ok(manifest.migrations.length >= 1);
  for (const entry of manifest.migrations) {
    const text = await Deno.readTextFile(new URL(`../migrations/${entry.file}`, import.meta.url));
    assert.equal(await sha256Hex(text), entry.sha256, entry.file);
  }
});

dbTest(
  "each pgflow function is defined once, in the sql/engine file of its verb",
  async ({ sql }) => {
    const definedIn = new Map<string, string[]>();
    for (const file of ENGINE_FILES) {
      const text = await Deno.readTextFile(new URL(`engine/${file}`, SQL_DIR));
      for (const [, name] of text.matchAll(/create or replace function pgflow\.(\w+)\s*\(/g)) {
        definedIn.set(name, [...definedIn.get(name) ?? [], file]);
      }
    }
    const functions = await sql<{ name: string }[]>`
    select distinct p.proname as name from pg_proc p
    where p.pronamespace = 'pgflow'::regnamespace order by 1`;
    for (const { name } of functions) {
      assert.equal(definedIn.get(name)?.length, 1, `pgflow.${name} in ${definedIn.get(name)}`);
    }
    assert.deepEqual([...definedIn.keys()].sort(), functions.map((f) => f.name));
  },
);

dbTest(
  "upgrading from the baseline to HEAD keeps runs in flight, which then finish",
  async ({ sql }) => {
    await installPgmq(sql);
    const [baseline, ...later] = await readMigrations();
    await applyMigrations(sql, [baseline]);
    await define(
      sql,
      `select pgflow.create_flow('upgrade', max_attempts => 2, base_delay => 0);
       select pgflow.add_step('upgrade', 'list');
       select pgflow.add_step('upgrade', 'each', deps_slugs => array['list'], step_type => 'map');
       select pgflow.add_step('upgrade', 'sum', deps_slugs => array['each']);`,
    );
    const runs = [];
    for (let n = 1; n <= 3; n++) runs.push(await startFlow(sql, { flowSlug: "upgrade", input: n }));
    // Mid-flight: every run's list step done; one run's map tasks started, not reported.
    for (const task of await takeTasks(sql, "upgrade")) {
      const count = (task.input as { run: number }).run;
      await completeTask(sql, {
        runId: task.run_id,
        stepSlug: task.step_slug,
        taskIndex: task.task_index,
        output: Array.from({ length: count }, (_, i) => i + 1),
      });
    }
    const started = await takeTasks(sql, "upgrade", 1);
    assert.equal(started.length, 1);

    assert.deepEqual(
      await applyMigrations(sql, await readMigrations()),
      later.map((m) => m.version),
    );

    const [task] = started;
    await completeTask(sql, {
      runId: task.run_id,
      stepSlug: task.step_slug,
      taskIndex: task.task_index,
      output: (task.input as number) * 10,
    });
    await runUntilIdle(sql, "upgrade", {
      each: (n) => (n as number) * 10,
      sum: (input) => (input as { each: number[] }).each.reduce((a, b) => a + b, 0),
    });
    for (const [i, run] of runs.entries()) {
      const n = i + 1;
      const finished = await getRun(sql, run.run_id);
      assert.equal(finished.status, "completed");
      assert.deepEqual(finished.output, { sum: (n * (n + 1) / 2) * 10 });
    }
  },
  { template: "empty" },
);

Deno.test("ARCHITECTURE.md names every engine function under its file", async () => {
  const architecture = await Deno.readTextFile(new URL("../ARCHITECTURE.md", import.meta.url));
  for (const file of ENGINE_FILES) {
    const text = await Deno.readTextFile(new URL(`engine/${file}`, SQL_DIR));
    const row = architecture.split("\n").find((line) => line.startsWith(`| \`${file}\``));
    assert.ok(row, `ARCHITECTURE.md has a row for ${file}`);
    for (const [, name] of text.matchAll(/create or replace function pgflow\.(\w+)\s*\(/g)) {
      assert.ok(row.includes(`\`${name}\``), `ARCHITECTURE.md lists ${name} under ${file}`);
    }
  }
});
