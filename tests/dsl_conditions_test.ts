/**
 * Step conditions in the DSL: the types (skippable dependencies are optional keys, skippable
 * leaves optional in the flow output, patterns typed by the condition's input), run-time
 * validation, the flow shape and the compiled SQL.
 */
import assert from "node:assert/strict";
import { Flow, FlowDefinitionError, type FlowOutput, type StepInput } from "../src/dsl/mod.ts";
import { compileFlow, flowShape } from "../src/compile/mod.ts";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
function expectType<_T extends true>(): void {}

interface Order {
  plan: "free" | "pro";
  items: { sku: string; qty: number }[];
}

const flow = new Flow<Order>({ slug: "orders" })
  .step({ slug: "check" }, ({ run }) => ({ ok: run.items.length > 0 }))
  .step({ slug: "discount", if: { plan: "pro" } }, () => 10)
  .step({ slug: "plain", ifNot: { plan: "pro" }, whenUnmet: "fail" }, () => "plain")
  .step(
    {
      slug: "fraud",
      dependsOn: ["check"],
      if: { check: { ok: false } },
      whenUnmet: "skip-cascade",
    },
    () => ({ flagged: true }),
  )
  .step({ slug: "review", dependsOn: ["fraud"] }, ({ fraud }) => fraud.flagged)
  .step({ slug: "flaky", whenExhausted: "skip" }, () => 1)
  .step(
    { slug: "ship", dependsOn: ["check", "discount", "plain", "flaky"] },
    ({ check, discount, plain, flaky }) => ({
      ok: check.ok,
      discount: discount ?? 0,
      plain,
      extra: flaky ?? 0,
    }),
  );

type F = typeof flow;

Deno.test("a dependency that may be skipped alone is an optional key of the input", () => {
  expectType<
    Equal<
      StepInput<F, "ship">,
      { run: Order; check: { ok: boolean }; plain: string; discount?: number; flaky?: number }
    >
  >();
  // skip-cascade: its dependents are skipped with it, so when they run it is there.
  expectType<Equal<StepInput<F, "review">, { run: Order; fraud: { flagged: boolean } }>>();
});

Deno.test("the flow output leaves out leaves that may be skipped", () => {
  // review may be skipped (after fraud, skip-cascade); ship cannot.
  expectType<
    Equal<
      FlowOutput<F>,
      {
        ship: { ok: boolean; discount: number; plain: string; extra: number };
        review?: boolean;
      }
    >
  >();
  const failing = new Flow<Order>({ slug: "f" }).step(
    { slug: "only", if: { plan: "pro" }, whenUnmet: "fail" },
    () => 1,
  );
  expectType<Equal<FlowOutput<typeof failing>, { only: number }>>();
});

Deno.test("patterns are typed by what the condition tests", () => {
  new Flow<Order>({ slug: "p" })
    // @ts-expect-error a root step's pattern is part of the flow input: plan is "free" | "pro"
    .step({ slug: "a", if: { plan: "gold" } }, () => 1);
  new Flow<Order>({ slug: "p" })
    .step({ slug: "a" }, () => ({ n: 1 }))
    // @ts-expect-error a dependent step's pattern is { <dep>: <output> }: a.n is a number
    .step({ slug: "b", dependsOn: ["a"], if: { a: { n: "1" } } }, () => 1);
  assert.throws(
    () =>
      new Flow<Order>({ slug: "p" })
        // @ts-expect-error whenUnmet is one of fail, skip, skip-cascade
        .step({ slug: "a", if: { plan: "pro" }, whenUnmet: "ignore" }, () => 1),
    /option whenUnmet must be "fail", "skip" or "skip-cascade", got "ignore"/,
  );
});

Deno.test("bad conditions are refused at run time with the step named", () => {
  const loose = new Flow({ slug: "loose" }) as unknown as {
    step(config: Record<string, unknown>, handler: () => number): unknown;
  };
  assert.throws(
    () => loose.step({ slug: "a", if: [1] }, () => 1),
    (e: unknown) =>
      e instanceof FlowDefinitionError &&
      /step "?a"?.*option if must be a JSON object \(a containment pattern\), got/.test(
        e.message,
      ),
  );
  assert.throws(
    () => loose.step({ slug: "a", ifNot: { x: () => 1 } }, () => 1),
    /option ifNot must be plain JSON/,
  );
  assert.throws(
    () => loose.step({ slug: "a", whenExhausted: "retry" }, () => 1),
    /option whenExhausted must be "fail", "skip" or "skip-cascade", got "retry"/,
  );
});

Deno.test("flow shape and compiled SQL carry the conditions in pgflow's names", () => {
  const steps = flowShape(flow).steps;
  assert.deepEqual(steps.find((s) => s.slug === "discount"), {
    slug: "discount",
    stepType: "single",
    dependencies: [],
    requiredInputPattern: { defined: true, value: { plan: "pro" } },
  });
  assert.deepEqual(steps.find((s) => s.slug === "plain"), {
    slug: "plain",
    stepType: "single",
    dependencies: [],
    whenUnmet: "fail",
    forbiddenInputPattern: { defined: true, value: { plan: "pro" } },
  });
  assert.deepEqual(steps.find((s) => s.slug === "flaky"), {
    slug: "flaky",
    stepType: "single",
    dependencies: [],
    whenExhausted: "skip",
  });
  const sql = compileFlow(flow);
  assert.equal(
    sql.find((s) => s.includes("'fraud'")),
    "SELECT pgflow.add_step(flow_slug => 'orders', step_slug => 'fraud', deps_slugs => ARRAY['check']::text[], " +
      `required_input_pattern => '{"check":{"ok":false}}'::jsonb, when_unmet => 'skip-cascade');`,
  );
  assert.equal(
    sql.find((s) => s.includes("'check'") && !s.includes("deps")),
    "SELECT pgflow.add_step(flow_slug => 'orders', step_slug => 'check');",
  );
  // Quotes inside a pattern are escaped.
  const quoted = new Flow<{ name: string }>({ slug: "q" }).step(
    { slug: "a", if: { name: "it's" } },
    () => 1,
  );
  assert.match(compileFlow(quoted)[1], /required_input_pattern => '\{"name":"it''s"\}'::jsonb/);
});
