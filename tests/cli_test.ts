import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { runSupabase } from "./_support/supabase_cli.ts";
import { runUntilIdle } from "./_support/drive.ts";
import { installPgmq } from "../src/dev/pgmq.ts";
import { readMigrations } from "../src/db/migrate.ts";

const CLI_MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function edgeflow(args: string[], cwd: string, env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI_MAIN, ...args],
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

async function listTree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory) out.push(...await listTree(`${dir}/${entry.name}`, `${path}/`));
    else out.push(path);
  }
  return out.sort();
}

dbTest(
  "install into a fresh `supabase init` project, twice; db push applies it",
  async ({ sql, url }) => {
    const project = await Deno.makeTempDir({ prefix: "edgeflow-install-" });
    try {
      const init = await runSupabase(["init", "--yes"], project);
      assert.equal(init.code, 0, init.output);
      // An existing migration of the user's, newer than the core's.
      await Deno.mkdir(`${project}/supabase/migrations`, { recursive: true });
      await Deno.writeTextFile(
        `${project}/supabase/migrations/29991231000000_users_own.sql`,
        "select 1;",
      );

      const first = await edgeflow(["install"], project);
      assert.equal(first.code, 0, first.stderr);
      const core = await readMigrations();
      // Core migrations keep their own versions and texts, as `edgeflow migrate` records them.
      for (const m of core) {
        const file = `${m.version}_${m.name}.sql`;
        assert.match(first.stdout, new RegExp(`added migration ${file}`));
        assert.equal(await Deno.readTextFile(`${project}/supabase/migrations/${file}`), m.sql);
      }
      assert.match(first.stdout, /created supabase\/functions\/greet-users-worker\/index\.ts/);
      const tree = await listTree(`${project}/supabase`);
      const added = tree.filter((f) => /^migrations\/\d{14}_edgeflow_/.test(f));
      assert.equal(added.length, core.length);
      assert.ok(tree.some((f) => /^migrations\/\d{14}_create_greet_users_flow\.sql$/.test(f)));
      const index = await Deno.readTextFile(
        `${project}/supabase/functions/greet-users-worker/index.ts`,
      );
      assert.match(index, /Deno\.serve\(createWorker\(GreetUsers\)\);/);

      const second = await edgeflow(["install"], project);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, /edgeflow is already installed/);
      assert.deepEqual(
        await listTree(`${project}/supabase`),
        tree,
        "the second install changed nothing",
      );

      // The project's migrations (user's, core, example flow) apply with the real CLI.
      await installPgmq(sql);
      const pushed = await runSupabase([
        "db",
        "push",
        "--db-url",
        `${url}?sslmode=disable`,
        "--yes",
      ], project);
      assert.equal(pushed.code, 0, pushed.output);
      const steps =
        await sql`select step_slug, step_type from pgflow.steps where flow_slug = 'greet_users' order by step_index`;
      assert.deepEqual(steps.map((s) => [s.step_slug, s.step_type]), [["names", "single"], [
        "greet",
        "map",
      ], [
        "count",
        "single",
      ]]);
    } finally {
      await Deno.remove(project, { recursive: true });
    }
  },
  { template: "empty" },
);

dbTest(
  "install, migrate and supabase db push agree on what is applied, in either order",
  async ({ sql, url }) => {
    const project = await Deno.makeTempDir({ prefix: "edgeflow-agree-" });
    try {
      assert.equal((await runSupabase(["init", "--yes"], project)).code, 0);
      await installPgmq(sql);
      // edgeflow migrate first, then install and db push: push finds the core applied.
      const migrated = await edgeflow(["migrate", "--db-url", url], project);
      assert.equal(migrated.code, 0, migrated.stderr);
      assert.equal((await edgeflow(["install"], project)).code, 0);
      const pushed = await runSupabase(
        ["db", "push", "--db-url", `${url}?sslmode=disable`, "--yes"],
        project,
      );
      assert.equal(pushed.code, 0, pushed.output);
      for (const m of await readMigrations()) {
        assert.doesNotMatch(pushed.output, new RegExp(`Applying migration ${m.version}_`));
      }
      assert.match(pushed.output, /Applying migration \d{14}_create_greet_users_flow\.sql/);
      // And migrate after the push has nothing to do.
      const again = await edgeflow(["migrate", "--db-url", url], project);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /up to date/);

      // An edited copy of a core migration is refused, not silently kept.
      const [first] = await readMigrations();
      const copy = `${project}/supabase/migrations/${first.version}_${first.name}.sql`;
      await Deno.writeTextFile(copy, first.sql + "\n-- edited\n");
      const refused = await edgeflow(["install"], project);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /differs from edgeflow's migration of that name/);
    } finally {
      await Deno.remove(project, { recursive: true });
    }
  },
  { template: "empty" },
);

dbTest("install refuses a folder that is not a Supabase project", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const result = await edgeflow(["install", "--supabase-path", "nowhere"], dir);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /nowhere\/config\.toml not found: run `supabase init` first/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

dbTest("start, status and runs report runs; bad usage exits 2", async ({ sql, url }) => {
  await sql.unsafe(`select pgflow.create_flow('cli'); select pgflow.add_step('cli', 'only');`);
  const started = await edgeflow(
    ["start", "cli", '{"n": 1}', "--no-wait", "--db-url", url],
    Deno.cwd(),
  );
  assert.equal(started.code, 0, started.stderr);
  const runId = /started run ([0-9a-f-]{36}) of flow cli/.exec(started.stdout)?.[1];
  assert.ok(runId, started.stdout);

  // `status` follows the run live and ends when a worker (here: the test) completes it.
  const status = edgeflow(["status", runId!, "--db-url", url], Deno.cwd());
  await runUntilIdle(sql, "cli", { only: () => ({ done: true }) });
  const result = await status;
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`run ${runId} completed \\[only:completed\\]`));
  assert.match(result.stdout, /\{"only":\{"done":true\}\}/);

  const runs = await edgeflow(["runs", "--flow", "cli", "--db-url", url], Deno.cwd());
  assert.equal(runs.code, 0, runs.stderr);
  assert.match(runs.stdout, new RegExp(`${runId}  cli\\s+completed`));

  for (
    const [args, pattern] of [
      [["start", "cli"], /start needs <flow> and <json input>/],
      [["start", "cli", "{not json", "--db-url", url], /input is not JSON/],
      [["runs", "--limit", "0", "--db-url", url], /--limit must be a positive integer/],
      [["frobnicate"], /unknown command "frobnicate"/],
    ] as const
  ) {
    const bad = await edgeflow([...args], Deno.cwd());
    assert.equal(bad.code, 2, bad.stdout + bad.stderr);
    assert.match(bad.stderr, pattern);
  }
  const unknownFlow = await edgeflow(["start", "nope", "{}", "--db-url", url], Deno.cwd());
  assert.equal(unknownFlow.code, 1);
  assert.match(unknownFlow.stderr, /start_flow\('nope'\): flow 'nope' does not exist/);
});

dbTest(
  "install works with edgeflow run from a web address (deno run <url>/src/cli/main.ts)",
  async () => {
    // This checkout over HTTP, as a user would reach a published copy.
    const root = new URL("../", import.meta.url);
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      async (request) => {
        try {
          return new Response(
            await Deno.readFile(new URL(`.${new URL(request.url).pathname}`, root)),
          );
        } catch {
          return new Response("not found", { status: 404 });
        }
      },
    );
    const base = `http://127.0.0.1:${server.addr.port}`;
    const project = await Deno.makeTempDir({ prefix: "edgeflow-remote-" });
    try {
      await Deno.mkdir(`${project}/supabase`);
      await Deno.writeTextFile(`${project}/supabase/config.toml`, 'project_id = "remote"\n');
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--import-map",
          `${base}/deno.json`,
          `${base}/src/cli/main.ts`,
          "install",
        ],
        cwd: project,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(output.stdout);
      assert.equal(output.code, 0, stdout + new TextDecoder().decode(output.stderr));
      const core = await readMigrations();
      assert.equal((stdout.match(/added migration \d{14}_edgeflow_/g) ?? []).length, core.length);
      const map = JSON.parse(
        await Deno.readTextFile(`${project}/supabase/functions/greet-users-worker/deno.json`),
      );
      assert.equal(map.imports.edgeflow, `${base}/src/mod.ts`);
    } finally {
      await server.shutdown();
      await Deno.remove(project, { recursive: true });
    }
  },
);
