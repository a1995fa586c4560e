/** compileFlow (SQL statements), flowShape (canonical JSON) and writeFlowMigration (files). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compileFlow, flowShape, writeFlowMigration } from "../src/compile/mod.ts";
import { sqlString, sqlTextArray } from "../src/compile/sql_literal.ts";
import { type AnyFlow, Flow } from "../src/dsl/mod.ts";
import analyzeWebsite from "../examples/analyze_website.ts";

const noop = () => null;
const list = () => [1, 2, 3];
const create = (slug: string, rest = "max_attempts => 3, base_delay => 5, timeout => 60") =>
  `SELECT pgflow.create_flow(flow_slug => '${slug}', ${rest});`;

Deno.test("linear flow", () => {
  const flow = new Flow({ slug: "linear" })
    .step({ slug: "a" }, noop)
    .step({ slug: "b", dependsOn: ["a"] }, noop)
    .step({ slug: "c", dependsOn: ["b"] }, noop);
  assert.deepEqual(compileFlow(flow), [
    create("linear"),
    "SELECT pgflow.add_step(flow_slug => 'linear', step_slug => 'a');",
    "SELECT pgflow.add_step(flow_slug => 'linear', step_slug => 'b', deps_slugs => ARRAY['a']::text[]);",
    "SELECT pgflow.add_step(flow_slug => 'linear', step_slug => 'c', deps_slugs => ARRAY['b']::text[]);",
  ]);
});

Deno.test("diamond: the spec's analyze_website example", () => {
  assert.deepEqual(compileFlow(analyzeWebsite), [
    create("analyze_website", "max_attempts => 3, base_delay => 5, timeout => 10"),
    "SELECT pgflow.add_step(flow_slug => 'analyze_website', step_slug => 'website');",
    "SELECT pgflow.add_step(flow_slug => 'analyze_website', step_slug => 'sentiment', deps_slugs => ARRAY['website']::text[], timeout => 30);",
    "SELECT pgflow.add_step(flow_slug => 'analyze_website', step_slug => 'summary', deps_slugs => ARRAY['website']::text[]);",
    "SELECT pgflow.add_step(flow_slug => 'analyze_website', step_slug => 'saveToDb', deps_slugs => ARRAY['sentiment', 'summary']::text[]);",
  ]);
});

Deno.test("multiple roots; dependencies keep their declared order", () => {
  const flow = new Flow({ slug: "roots" })
    .step({ slug: "zeta" }, noop)
    .step({ slug: "alpha" }, noop)
    .step({ slug: "join", dependsOn: ["zeta", "alpha"] }, noop);
  assert.deepEqual(compileFlow(flow).slice(1), [
    "SELECT pgflow.add_step(flow_slug => 'roots', step_slug => 'zeta');",
    "SELECT pgflow.add_step(flow_slug => 'roots', step_slug => 'alpha');",
    "SELECT pgflow.add_step(flow_slug => 'roots', step_slug => 'join', deps_slugs => ARRAY['zeta', 'alpha']::text[]);",
  ]);
});

Deno.test("root map", () => {
  const flow = new Flow<string[]>({ slug: "batch" }).map({ slug: "each" }, (s) => s.length);
  assert.deepEqual(compileFlow(flow), [
    create("batch"),
    "SELECT pgflow.add_step(flow_slug => 'batch', step_slug => 'each', step_type => 'map');",
  ]);
});

Deno.test("map chain after an array step", () => {
  const flow = new Flow({ slug: "chain" })
    .array({ slug: "items" }, list)
    .map({ slug: "double", array: "items" }, (n) => n * 2)
    .map({ slug: "label", array: "double" }, (n) => `#${n}`)
    .step({ slug: "report", dependsOn: ["label"] }, ({ label }) => label.length);
  assert.deepEqual(compileFlow(flow).slice(1), [
    // .array() is an ordinary single step in SQL.
    "SELECT pgflow.add_step(flow_slug => 'chain', step_slug => 'items');",
    "SELECT pgflow.add_step(flow_slug => 'chain', step_slug => 'double', deps_slugs => ARRAY['items']::text[], step_type => 'map');",
    "SELECT pgflow.add_step(flow_slug => 'chain', step_slug => 'label', deps_slugs => ARRAY['double']::text[], step_type => 'map');",
    "SELECT pgflow.add_step(flow_slug => 'chain', step_slug => 'report', deps_slugs => ARRAY['label']::text[]);",
  ]);
});

Deno.test("all options set, and only set options passed", () => {
  const flow = new Flow<number[]>({ slug: "opts", maxAttempts: 7, baseDelay: 2, timeout: 120 })
    .map({ slug: "m", maxAttempts: 1, baseDelay: 9, timeout: 5, startDelay: 0 }, (n) => n)
    .step(
      { slug: "s", dependsOn: ["m"], maxAttempts: 10, baseDelay: 1, timeout: 3600, startDelay: 30 },
      noop,
    )
    .step({ slug: "t", dependsOn: ["s"], timeout: 15 }, noop);
  assert.deepEqual(compileFlow(flow), [
    create("opts", "max_attempts => 7, base_delay => 2, timeout => 120"),
    "SELECT pgflow.add_step(flow_slug => 'opts', step_slug => 'm', max_attempts => 1, base_delay => 9, timeout => 5, start_delay => 0, step_type => 'map');",
    "SELECT pgflow.add_step(flow_slug => 'opts', step_slug => 's', deps_slugs => ARRAY['m']::text[], max_attempts => 10, base_delay => 1, timeout => 3600, start_delay => 30);",
    "SELECT pgflow.add_step(flow_slug => 'opts', step_slug => 't', deps_slugs => ARRAY['s']::text[], timeout => 15);",
  ]);
});

Deno.test("odd but valid slugs are quoted as they are", () => {
  const long = "L".repeat(128);
  const flow = new Flow({ slug: "_" })
    .step({ slug: "select" }, noop)
    .step({ slug: "NULL" }, noop)
    .step({ slug: long, dependsOn: ["select", "NULL"] }, noop)
    .step({ slug: "__9", dependsOn: [long] }, noop);
  assert.deepEqual(compileFlow(flow), [
    create("_"),
    "SELECT pgflow.add_step(flow_slug => '_', step_slug => 'select');",
    "SELECT pgflow.add_step(flow_slug => '_', step_slug => 'NULL');",
    `SELECT pgflow.add_step(flow_slug => '_', step_slug => '${long}', deps_slugs => ARRAY['select', 'NULL']::text[]);`,
    `SELECT pgflow.add_step(flow_slug => '_', step_slug => '__9', deps_slugs => ARRAY['${long}']::text[]);`,
  ]);
});

Deno.test("SQL string literals double quotes and survive backslashes", () => {
  assert.equal(sqlString("plain"), "'plain'");
  assert.equal(sqlString("O'Reilly"), "'O''Reilly'");
  assert.equal(sqlString("''"), "''''''");
  assert.equal(sqlString(""), "''");
  assert.equal(sqlString("a\\b'c"), "E'a\\\\b''c'");
  assert.equal(sqlString("ünï ✓"), "'ünï ✓'");
  assert.throws(() => sqlString("nul\0"), /NUL/);
  assert.equal(sqlTextArray(["a", "it's"]), "ARRAY['a', 'it''s']::text[]");
});

Deno.test("compileFlow quotes whatever a hand-made AnyFlow holds", () => {
  // Not buildable with Flow (slugs are validated); proves nothing reaches SQL unquoted.
  const step = {
    slug: "x'); DROP TABLE pgflow.flows; --",
    stepType: "single" as const,
    declaredWith: "step" as const,
    dependencies: ["it's"],
    options: {},
    handler: noop,
  };
  const flow: AnyFlow = {
    slug: "o'flow",
    options: { maxAttempts: 3, baseDelay: 5, timeout: 60 },
    stepSlugs: [step.slug],
    getStep: (slug) => (slug === step.slug ? step : undefined),
  };
  assert.deepEqual(compileFlow(flow), [
    create("o''flow"),
    "SELECT pgflow.add_step(flow_slug => 'o''flow', step_slug => 'x''); DROP TABLE pgflow.flows; --', deps_slugs => ARRAY['it''s']::text[]);",
  ]);
  const badNumber: AnyFlow = { ...flow, options: { ...flow.options, timeout: 1.5 } };
  assert.throws(() => compileFlow(badNumber), /integer/);
  const missing: AnyFlow = { ...flow, getStep: () => undefined };
  assert.throws(() => compileFlow(missing), /step .* is listed but not defined/);
});

Deno.test("flowShape: pgflow's format, unset step options left out, dependencies sorted", () => {
  const flow = new Flow<number[]>({ slug: "shape", timeout: 30 })
    .map({ slug: "b", startDelay: 0 }, (n) => n)
    .step({ slug: "a" }, noop)
    .step({ slug: "B", maxAttempts: 2 }, noop)
    .step({ slug: "_z" }, noop)
    .step({ slug: "join", dependsOn: ["b", "a", "_z", "B"], baseDelay: 4, timeout: 9 }, noop);
  const shape = flowShape(flow);
  assert.deepEqual(shape, {
    options: { maxAttempts: 3, baseDelay: 5, timeout: 30 },
    steps: [
      step("b", "map", [], { startDelay: 0 }),
      step("a", "single", [], {}),
      step("B", "single", [], { maxAttempts: 2 }),
      step("_z", "single", [], {}),
      // Code-unit order: uppercase < underscore < lowercase.
      step("join", "single", ["B", "_z", "a", "b"], { baseDelay: 4, timeout: 9 }),
    ],
  });
  // Key order is part of the format (the SQL side builds the same JSON).
  assert.ok(
    JSON.stringify(shape).startsWith(
      '{"options":{"maxAttempts":3,"baseDelay":5,"timeout":30},"steps":[{"slug":"b","stepType":"map",' +
        '"dependencies":[],"options":{"startDelay":0}},{"slug":"a","stepType":"single","dependencies":[]}',
    ),
  );
  assert.deepEqual(Object.keys(shape.steps[4].options!), ["baseDelay", "timeout"]);
  // The shape is a copy: changing it does not touch the flow.
  shape.steps[4].dependencies.push("x");
  assert.deepEqual(flow.getStep("join").dependencies, ["b", "a", "_z", "B"]);
});

Deno.test("flowShape of an empty flow and of the example", () => {
  assert.deepEqual(flowShape(new Flow({ slug: "empty" })), {
    options: { maxAttempts: 3, baseDelay: 5, timeout: 60 },
    steps: [],
  });
  assert.deepEqual(
    flowShape(analyzeWebsite).steps.map((
      s,
    ) => [s.slug, s.dependencies, s.options?.timeout ?? null]),
    [
      ["website", [], null],
      ["sentiment", ["website"], 30],
      ["summary", ["website"], null],
      ["saveToDb", ["sentiment", "summary"], null],
    ],
  );
});

function step(
  slug: string,
  stepType: "single" | "map",
  dependencies: string[],
  options: { maxAttempts?: number; baseDelay?: number; timeout?: number; startDelay?: number },
) {
  return Object.keys(options).length
    ? { slug, stepType, dependencies, options }
    : { slug, stepType, dependencies };
}

// --- writeFlowMigration -----------------------------------------------------------------

const DSL_URL = new URL("../src/dsl/mod.ts", import.meta.url).href;
const NOW = new Date("2025-03-04T05:06:07.890Z");

/** A temp folder with a flow module built from `body` (which sees `Flow`). */
async function fixture(body: string, name = "flow.ts"): Promise<{ dir: string; module: string }> {
  const dir = await Deno.makeTempDir({ prefix: "edgeflow-compile-test-" });
  const module = join(dir, name);
  await Deno.writeTextFile(module, `import { Flow } from "${DSL_URL}";\n${body}\n`);
  return { dir, module };
}

const ONE_STEP = `export default new Flow({ slug: "greet" }).step({ slug: "hello" }, () => "hi");`;

Deno.test("writeFlowMigration writes a timestamped migration with a header", async () => {
  const { dir, module } = await fixture(ONE_STEP);
  const supabasePath = join(dir, "supabase");
  const result = await writeFlowMigration(module, { supabasePath, now: NOW });
  const expectedPath = join(supabasePath, "migrations", "20250304050607_create_greet_flow.sql");
  assert.deepEqual(result, { flowSlug: "greet", path: expectedPath, created: true });
  const text = await Deno.readTextFile(expectedPath);
  const lines = text.split("\n");
  assert.match(lines[0], /^-- edgeflow: creates flow "greet" \(compiled from .*flow\.ts\)\.$/);
  assert.ok(lines.slice(0, 3).every((line) => line.startsWith("--")));
  assert.deepEqual(lines.slice(3), [
    create("greet"),
    "SELECT pgflow.add_step(flow_slug => 'greet', step_slug => 'hello');",
    "",
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeFlowMigration: the same flow again writes nothing and returns the existing file", async () => {
  const { dir, module } = await fixture(ONE_STEP);
  const supabasePath = join(dir, "supabase");
  const first = await writeFlowMigration(module, { supabasePath, now: NOW });
  const again = await writeFlowMigration(module, {
    supabasePath,
    now: new Date("2026-01-01T00:00:00Z"),
  });
  assert.deepEqual(again, { ...first, created: false });
  assert.deepEqual(await names(supabasePath), ["20250304050607_create_greet_flow.sql"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeFlowMigration refuses a changed definition of an existing flow, unless forced", async () => {
  const { dir, module } = await fixture(ONE_STEP);
  const supabasePath = join(dir, "supabase");
  await writeFlowMigration(module, { supabasePath, now: NOW });
  await Deno.writeTextFile(
    module,
    `import { Flow } from "${DSL_URL}";\n` +
      `export default new Flow({ slug: "greet", timeout: 5 }).step({ slug: "hello" }, () => "hi");\n`,
  );
  const changed = { supabasePath, now: new Date("2025-03-04T06:00:00Z") };
  // A fresh module URL each time: Deno caches imported modules by URL.
  const changedModule = join(dir, "flow_v2.ts");
  await Deno.rename(module, changedModule);
  await assert.rejects(
    () => writeFlowMigration(changedModule, changed),
    /^Error: Flow "greet": .*20250304050607_create_greet_flow\.sql already defines this flow differently.*"greet_v2"/,
  );
  assert.equal((await names(supabasePath)).length, 1);
  const forced = await writeFlowMigration(changedModule, { ...changed, force: true });
  assert.equal(forced.created, true);
  assert.deepEqual(await names(supabasePath), [
    "20250304050607_create_greet_flow.sql",
    "20250304060000_create_greet_flow.sql",
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeFlowMigration orders the flow after every existing migration", async () => {
  const { dir, module } = await fixture(ONE_STEP);
  const migrations = join(dir, "supabase", "migrations");
  await Deno.mkdir(migrations, { recursive: true });
  // The SQL core's migrations may carry a later timestamp than the clock (or the same second).
  await Deno.writeTextFile(join(migrations, "20250304050607_edgeflow_core.sql"), "select 1;\n");
  await Deno.writeTextFile(join(migrations, "20250304050608_edgeflow_more.sql"), "select 1;\n");
  const result = await writeFlowMigration(module, {
    supabasePath: join(dir, "supabase"),
    now: NOW,
  });
  assert.equal(result.path, join(migrations, "20250304050609_create_greet_flow.sql"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeFlowMigration picks the default export, the only flow, or the named one", async () => {
  const single = await fixture(
    `export const helper = 1;\nexport const onlyFlow = new Flow({ slug: "only" });`,
  );
  const onlyResult = await writeFlowMigration(single.module, {
    supabasePath: join(single.dir, "sb"),
    now: NOW,
  });
  assert.equal(onlyResult.flowSlug, "only");

  const several = await fixture(
    `export const first = new Flow({ slug: "first" });\nexport const second = new Flow({ slug: "second" });`,
  );
  await assert.rejects(
    () => writeFlowMigration(several.module, { supabasePath: join(several.dir, "sb") }),
    /several Flows exported \(first, second\); choose one/,
  );
  const named = await writeFlowMigration(several.module, {
    supabasePath: join(several.dir, "sb"),
    exportName: "second",
    now: NOW,
  });
  assert.equal(
    named.path,
    join(several.dir, "sb", "migrations", "20250304050607_create_second_flow.sql"),
  );
  await assert.rejects(
    () => writeFlowMigration(several.module, { exportName: "third" }),
    /export "third" is missing/,
  );

  const none = await fixture(`export const notAFlow = { slug: "x" };`);
  await assert.rejects(() => writeFlowMigration(none.module), /no Flow exported/);
  for (const { dir } of [single, several, none]) await Deno.remove(dir, { recursive: true });
});

Deno.test("the CLI entry writes the migration and reports it", async () => {
  const { dir, module } = await fixture(ONE_STEP);
  const supabasePath = join(dir, "project");
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../src/compile/main.ts", import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const created = await run([module, "--supabase-path", supabasePath]);
  const out = new TextDecoder().decode(created.stdout);
  assert.equal(created.code, 0, new TextDecoder().decode(created.stderr));
  assert.match(out, /^created .*project\/migrations\/\d{14}_create_greet_flow\.sql\n$/);
  const again = await run([module, "--supabase-path", supabasePath]);
  assert.equal(again.code, 0);
  assert.match(
    new TextDecoder().decode(again.stdout),
    /^unchanged: .* already creates flow "greet"/,
  );
  const usage = await run([]);
  assert.equal(usage.code, 2);
  assert.match(new TextDecoder().decode(usage.stderr), /usage: /);
  const missing = await run([join(dir, "nope.ts")]);
  assert.equal(missing.code, 1);
  assert.match(new TextDecoder().decode(missing.stderr), /^error: /);
  await Deno.remove(dir, { recursive: true });
});

async function names(supabasePath: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(join(supabasePath, "migrations"))) found.push(entry.name);
  return found.sort();
}
