/**
 * DSL -> compileFlow -> SQL core -> read back: the stored definition is the one the
 * DSL describes, and the shape check verifies it or names each difference.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { getRun, takeTasks } from "./_support/drive.ts";
import { type AnyFlow, Flow } from "../src/dsl/mod.ts";
import { compileFlow } from "../src/compile/compile_flow.ts";
import { flowShape } from "../src/dsl/flow_shape.ts";
import { ensureFlowCompiled } from "../src/db/definitions.ts";
import { startFlow } from "../src/db/runs.ts";
import { completeTask } from "../src/db/tasks.ts";
import type { Sql } from "../src/db/connect.ts";
import type { StepContext } from "../src/dsl/context.ts";
import analyzeWebsite from "../examples/analyze_website.ts";
import orderFulfillment from "../examples/order_fulfillment.ts";

const linear = new Flow<{ n: number }>({ slug: "linear" })
  .step({ slug: "a" }, ({ run }) => run.n)
  .step({ slug: "b", dependsOn: ["a"] }, ({ a }) => a + 1)
  .step({ slug: "c", dependsOn: ["b"] }, ({ b }) => b * 2);

const diamond = new Flow<string>({ slug: "diamond" })
  .step({ slug: "top" }, ({ run }) => run)
  .step({ slug: "left", dependsOn: ["top"] }, ({ top }) => `${top}-l`)
  .step({ slug: "right", dependsOn: ["top"] }, ({ top }) => `${top}-r`)
  .step({ slug: "bottom", dependsOn: ["right", "left"] }, ({ left, right }) => left + right);

const roots = new Flow<number>({ slug: "roots" })
  .step({ slug: "x" }, ({ run }) => run)
  .step({ slug: "y" }, ({ run }) => -run)
  .step({ slug: "z", dependsOn: ["x", "y"] }, ({ x, y }) => x + y);

const rootMap = new Flow<number[]>({ slug: "root_map" })
  .map({ slug: "double" }, (n) => n * 2)
  .step({ slug: "sum", dependsOn: ["double"] }, ({ double }) => double.reduce((a, b) => a + b, 0));

const mapChain = new Flow<{ words: string }>({ slug: "map_chain" })
  .array({ slug: "split" }, ({ run }) => run.words.split(" "))
  .map({ slug: "upper", array: "split" }, (word) => word.toUpperCase())
  .map({ slug: "length", array: "upper" }, (word) => word.length);

const allOptions = new Flow<null>({
  slug: "all_options",
  maxAttempts: 7,
  baseDelay: 0,
  timeout: 99,
})
  .step({ slug: "first", maxAttempts: 2, baseDelay: 4, timeout: 8, startDelay: 16 }, () => 1)
  .array({ slug: "list", dependsOn: ["first"], startDelay: 0 }, () => [1, 2])
  .map({ slug: "each", array: "list", timeout: 3 }, (n) => n);

const conditional = new Flow<{ plan: string }>({ slug: "conditional" })
  .step({ slug: "a", if: { plan: "pro" }, whenExhausted: "skip-cascade" }, () => ({ ok: true }))
  .array({ slug: "list", ifNot: { plan: "free" }, whenUnmet: "fail" }, () => [1, 2])
  .map({ slug: "b", array: "list", if: { list: [2] } }, (n) => n)
  .step({ slug: "c", dependsOn: ["a"], if: { a: { ok: true } }, whenUnmet: "skip" }, () => 2);

const FLOWS: AnyFlow[] = [
  linear,
  diamond,
  roots,
  rootMap,
  mapChain,
  allOptions,
  analyzeWebsite,
  conditional,
  orderFulfillment,
];

async function apply(sql: Sql, flow: AnyFlow) {
  await sql.unsafe(compileFlow(flow).join("\n"));
}

async function storedShape(sql: Sql, slug: string) {
  const [{ shape }] = await sql`select pgflow._get_flow_shape(${slug}) as shape`;
  return shape;
}

dbTest("compiled flows are stored exactly as the DSL describes them", async ({ sql }) => {
  for (const flow of FLOWS) {
    await apply(sql, flow);
    const [stored] = await sql`select * from pgflow.flows where flow_slug = ${flow.slug}`;
    assert.deepEqual(
      [stored.opt_max_attempts, stored.opt_base_delay, stored.opt_timeout],
      [flow.options.maxAttempts, flow.options.baseDelay, flow.options.timeout],
      flow.slug,
    );
    const steps = await sql`
      select s.*, coalesce((select array_agg(d.dep_slug order by d.dep_slug collate "C")
                            from pgflow.deps d
                            where d.flow_slug = s.flow_slug and d.step_slug = s.step_slug), '{}') as deps
      from pgflow.steps s where s.flow_slug = ${flow.slug} order by s.step_index`;
    assert.deepEqual(steps.map((s) => s.step_slug), [...flow.stepSlugs], flow.slug);
    for (const row of steps) {
      const step = flow.getStep(row.step_slug)!;
      assert.equal(row.step_type, step.stepType, `${flow.slug}.${step.slug} type`);
      assert.deepEqual(row.deps, [...step.dependencies].sort(), `${flow.slug}.${step.slug} deps`);
      assert.deepEqual(
        [row.opt_max_attempts, row.opt_base_delay, row.opt_timeout, row.opt_start_delay],
        [
          step.options.maxAttempts ?? null,
          step.options.baseDelay ?? null,
          step.options.timeout ?? null,
          step.options.startDelay ?? null,
        ],
        `${flow.slug}.${step.slug} options`,
      );
      assert.deepEqual(
        [
          row.required_input_pattern,
          row.forbidden_input_pattern,
          row.when_unmet,
          row.when_exhausted,
        ],
        [
          step.condition?.if ?? null,
          step.condition?.ifNot ?? null,
          step.condition?.whenUnmet ?? "skip",
          step.condition?.whenExhausted ?? "fail",
        ],
        `${flow.slug}.${step.slug} condition`,
      );
    }
    // The SQL core's view of the definition is the DSL's shape, key for key.
    assert.deepEqual(await storedShape(sql, flow.slug), flowShape(flow), flow.slug);
    // Applying the same statements again is harmless (idempotent definitions).
    await apply(sql, flow);
  }
});

dbTest("ensure_flow_compiled compiles a missing flow, then verifies it", async ({ sql }) => {
  for (const flow of FLOWS) {
    const shape = flowShape(flow);
    assert.deepEqual(await ensureFlowCompiled(sql, { flowSlug: flow.slug, shape }), {
      status: "compiled",
      differences: [],
    });
    assert.deepEqual(await ensureFlowCompiled(sql, { flowSlug: flow.slug, shape }), {
      status: "verified",
      differences: [],
    });
    assert.deepEqual(await storedShape(sql, flow.slug), shape);
  }
});

dbTest(
  "ensure_flow_compiled names each kind of difference and changes nothing",
  async ({ sql }) => {
    await apply(sql, allOptions);
    const changed = new Flow<null>({
      slug: "all_options",
      maxAttempts: 6,
      baseDelay: 0,
      timeout: 99,
    })
      .array({ slug: "list", startDelay: 0 }, () => [1])
      .step({
        slug: "first",
        dependsOn: ["list"],
        maxAttempts: 2,
        baseDelay: 4,
        timeout: 9,
        startDelay: 16,
      }, () => 1)
      .step({ slug: "each", timeout: 3 }, () => 0)
      .step({ slug: "extra" }, () => 0);
    const result = await ensureFlowCompiled(sql, {
      flowSlug: "all_options",
      shape: flowShape(changed),
    });
    assert.equal(result.status, "mismatch");
    // Structure only, by position, as pgflow compares; options are not structure.
    assert.deepEqual(result.differences, [
      "step count: code has 4, database has 3",
      "step at index 0: code has slug 'list', database has 'first'",
      "step at index 1: code has slug 'first', database has 'list'",
      "step at index 1 ('first'): code depends on [list], database on [first]",
      "step at index 2 ('each'): code has step type single, database has map",
      "step at index 2 ('each'): code depends on [], database on [list]",
      "step at index 3: the code has 'extra', the database has none",
    ]);
    const missing = new Flow<null>({
      slug: "all_options",
      maxAttempts: 7,
      baseDelay: 0,
      timeout: 99,
    })
      .step({ slug: "first", maxAttempts: 2, baseDelay: 4, timeout: 8, startDelay: 16 }, () => 1);
    assert.deepEqual(
      (await ensureFlowCompiled(sql, { flowSlug: "all_options", shape: flowShape(missing) }))
        .differences,
      [
        "step count: code has 1, database has 3",
        "step at index 1: the code has none, the database has 'list'",
        "step at index 2: the code has none, the database has 'each'",
      ],
    );
    assert.deepEqual(
      await storedShape(sql, "all_options"),
      flowShape(allOptions),
      "nothing changed",
    );
  },
);

dbTest(
  "with allow_data_loss a mismatched flow is recreated, runs and queue included",
  async ({ sql }) => {
    await apply(sql, linear);
    await startFlow(sql, { flowSlug: "linear", input: { n: 1 } });
    const changed = new Flow<{ n: number }>({ slug: "linear", timeout: 5 })
      .step({ slug: "a" }, ({ run }) => run.n);
    const result = await ensureFlowCompiled(sql, {
      flowSlug: "linear",
      shape: flowShape(changed),
      allowDataLoss: true,
    });
    assert.equal(result.status, "recompiled");
    assert.ok(result.differences.length > 0);
    assert.deepEqual(await storedShape(sql, "linear"), flowShape(changed));
    const [counts] = await sql`
    select (select count(*) from pgflow.runs)::int as runs,
           (select count(*) from pgmq.q_linear)::int as messages`;
    assert.deepEqual(counts, { runs: 0, messages: 0 });
  },
);

dbTest("concurrent ensure_flow_compiled calls create the flow once", async ({ sql, connect }) => {
  const shape = flowShape(diamond);
  const results = await Promise.all(
    Array.from({ length: 6 }, () => ensureFlowCompiled(connect(1), { flowSlug: "diamond", shape })),
  );
  assert.deepEqual(results.map((r) => r.status).sort(), [
    "compiled",
    "verified",
    "verified",
    "verified",
    "verified",
    "verified",
  ]);
  const [{ steps }] = await sql`select count(*)::int as steps from pgflow.steps`;
  assert.equal(steps, 4);
});

dbTest("ensure_flow_compiled rejects a malformed shape", async ({ sql }) => {
  for (
    const [shape, pattern] of [
      [null, /shape must be an object with "steps" \(array\) and optionally "options" \(object\)/],
      [
        { options: { maxAttempts: "3" }, steps: [] },
        /shape options.maxAttempts must be an integer/,
      ],
      [
        { options: { maxAttempts: 1, baseDelay: 1, timeout: 1 }, steps: [{ slug: "a" }] },
        /each shape step needs "slug" \(string\), "stepType" \(single\|map\)/,
      ],
    ] as const
  ) {
    await assert.rejects(ensureFlowCompiled(sql, { flowSlug: "bad", shape }), pattern);
  }
  const [{ flows }] = await sql`select count(*)::int as flows from pgflow.flows`;
  assert.equal(flows, 0);
});

dbTest("the spec's analyze_website, written with the DSL, runs to completion", async ({ sql }) => {
  await apply(sql, analyzeWebsite);
  const run = await startFlow(sql, {
    flowSlug: "analyze_website",
    input: { url: "https://example.com" },
  });
  for (let round = 0; round < 10; round++) {
    const tasks = await takeTasks(sql, "analyze_website");
    if (tasks.length === 0) break;
    for (const task of tasks) {
      const step = analyzeWebsite.getStep(task.step_slug)!;
      const context = { signal: new AbortController().signal } as StepContext;
      const output = await step.handler(task.input, context);
      await completeTask(sql, {
        runId: run.run_id,
        stepSlug: task.step_slug,
        taskIndex: 0,
        output,
      });
    }
  }
  const done = await getRun(sql, run.run_id);
  assert.equal(done.status, "completed");
  assert.deepEqual(done.output, {
    saveToDb: {
      status: "success",
      url: "https://example.com",
      label: "positive",
      summary: "Welcome to example.com.",
    },
  });
});
