/**
 * Run-time validation of flow definitions (for JavaScript users and slugs only known at run
 * time): every mistake throws a FlowDefinitionError naming the flow and the step.
 * Definitions go through `untyped` so that the type checker does not stop them first.
 */
import assert from "node:assert/strict";
import { type AnyFlow, Flow, FlowDefinitionError } from "../src/dsl/mod.ts";

// deno-lint-ignore no-explicit-any
type Loose = any;
/** The flow without its types, as a JavaScript caller sees it. */
const untyped = (flow: AnyFlow): Loose => flow;

const handler = () => 1;
const flow = new Flow<Loose>({ slug: "orders" })
  .step({ slug: "load" }, () => [1, 2])
  .step({ slug: "total", dependsOn: ["load"] }, handler);

function assertDefinitionError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FlowDefinitionError, `expected FlowDefinitionError, got ${error}`);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("flow slug format", () => {
  for (const slug of ["", "bad-slug", "1flow", "has space", "é", "run"]) {
    assertDefinitionError(() => new Flow({ slug }), /^Flow ".*": slug/);
  }
  // A flow slug names its pgmq queue: at most 47 characters, as create_flow says.
  assertDefinitionError(
    () => new Flow({ slug: "x".repeat(48) }),
    /^Flow "x{48}": flow slug must be at most 47 characters, got 48$/,
  );
  assertDefinitionError(() => new Flow(untyped(flow).nope), /flow config must be an object/);
  assertDefinitionError(() => new Flow({ slug: 42 as Loose }), /^Flow "42": slug must be a string/);
  for (const slug of ["a", "_", "A_1", "_private", "x".repeat(47), "Run", "runs"]) {
    assert.equal(new Flow({ slug }).slug, slug);
  }
});

Deno.test("step slug format names the flow and the step", () => {
  const cases: [unknown, RegExp][] = [
    ["", /^Flow "orders", step "": slug must not be empty$/],
    ["bad-slug", /^Flow "orders", step "bad-slug": slug "bad-slug" must start with a letter/],
    ["9lives", /^Flow "orders", step "9lives": slug "9lives" must start/],
    [
      "x".repeat(129),
      /^Flow "orders", step "x{129}": step slug must be at most 128 characters, got 129$/,
    ],
    [undefined, /^Flow "orders", step "undefined": slug must be a string, got undefined$/],
    [7, /^Flow "orders", step "7": slug must be a string, got 7$/],
  ];
  for (const [slug, message] of cases) {
    assertDefinitionError(() => untyped(flow).step({ slug }, handler), message);
  }
  assert.deepEqual(untyped(flow).step({ slug: "x".repeat(128) }, handler).stepSlugs.length, 3);
});

Deno.test("the slug run is reserved", () => {
  assertDefinitionError(
    () => untyped(flow).step({ slug: "run" }, handler),
    /^Flow "orders", step "run": slug "run" is reserved for the flow input$/,
  );
  assertDefinitionError(
    () => untyped(flow).map({ slug: "run" }, handler),
    /^Flow "orders", step "run": .*reserved/,
  );
  assertDefinitionError(
    () => untyped(flow).step({ slug: "s", dependsOn: ["run"] }, handler),
    /^Flow "orders", step "s": "run" is the flow input, not a step to depend on$/,
  );
});

Deno.test("unknown dependency", () => {
  assertDefinitionError(
    () => untyped(flow).step({ slug: "ship", dependsOn: ["load", "pack"] }, handler),
    /^Flow "orders", step "ship": depends on unknown step "pack" \(.*defined so far: load, total\)$/,
  );
  assertDefinitionError(
    () => untyped(new Flow({ slug: "empty" })).step({ slug: "a", dependsOn: ["b"] }, handler),
    /^Flow "empty", step "a": depends on unknown step "b" .*defined so far: none\)$/,
  );
  assertDefinitionError(
    () => untyped(flow).map({ slug: "each", array: "items" }, handler),
    /^Flow "orders", step "each": depends on unknown step "items"/,
  );
  // A step cannot depend on itself: it is not defined yet when its dependencies are checked.
  assertDefinitionError(
    () => untyped(flow).step({ slug: "self", dependsOn: ["self"] }, handler),
    /step "self": depends on unknown step "self"/,
  );
});

Deno.test("malformed dependsOn", () => {
  assertDefinitionError(
    () => untyped(flow).step({ slug: "s", dependsOn: "load" }, handler),
    /^Flow "orders", step "s": option dependsOn must be an array of step slugs, got "load"$/,
  );
  assertDefinitionError(
    () => untyped(flow).step({ slug: "s", dependsOn: [1] }, handler),
    /step "s": option dependsOn must contain step slugs, got 1$/,
  );
  assertDefinitionError(
    () => untyped(flow).step({ slug: "s", dependsOn: ["load", "load"] }, handler),
    /step "s": option dependsOn lists "load" twice$/,
  );
});

Deno.test("duplicate slug, whichever method declares it", () => {
  const message = /^Flow "orders", step "load": a step with this slug is already defined$/;
  assertDefinitionError(() => untyped(flow).step({ slug: "load" }, handler), message);
  assertDefinitionError(() => untyped(flow).array({ slug: "load" }, handler), message);
  assertDefinitionError(() => untyped(flow).map({ slug: "load", array: "load" }, handler), message);
});

Deno.test("a map step has at most one source", () => {
  assertDefinitionError(
    () => untyped(flow).map({ slug: "each", array: "load", dependsOn: ["total"] }, handler),
    /^Flow "orders", step "each": a map step takes its array from one source \(option array\), got "load" and "total"$/,
  );
  assertDefinitionError(
    () => untyped(flow).map({ slug: "each", dependsOn: ["load", "total"] }, handler),
    /step "each": a map step takes its array from one source .*got "load" and "total"$/,
  );
  assertDefinitionError(
    () => untyped(flow).map({ slug: "each", dependsOn: ["load"] }, handler),
    /step "each": .*got "load"; use array: "load"$/,
  );
  assertDefinitionError(
    () => untyped(flow).map({ slug: "each", array: ["load"] }, handler),
    /step "each": option array must be a step slug, got an array$/,
  );
  // Repeating the source in dependsOn is redundant but not ambiguous.
  const repeated = untyped(flow).map({ slug: "each", array: "load", dependsOn: ["load"] }, handler);
  assert.deepEqual(repeated.getStep("each").dependencies, ["load"]);
});

Deno.test("option ranges", () => {
  const bad: [string, unknown, string][] = [
    ["maxAttempts", -1, "between 0 and"],
    ["maxAttempts", 1.5, "between 0 and"],
    ["maxAttempts", "3", "between 0 and"],
    ["maxAttempts", null, "between 0 and"],
    ["baseDelay", -1, "between 0 and"],
    ["baseDelay", 0.5, "between 0 and"],
    ["timeout", 0, "between 1 and"],
    ["timeout", Infinity, "between 1 and"],
    ["timeout", NaN, "between 1 and"],
    ["timeout", 2 ** 31, "between 1 and"],
    ["startDelay", -1, "between 0 and"],
    ["startDelay", 0.5, "between 0 and"],
  ];
  for (const [option, value, range] of bad) {
    const message = new RegExp(
      `^Flow "orders", step "s": option ${option} must be an integer ${range}`,
    );
    assertDefinitionError(
      () => untyped(flow).step({ slug: "s", [option]: value }, handler),
      message,
    );
    assertDefinitionError(
      () => untyped(flow).map({ slug: "s", [option]: value }, handler),
      message,
    );
    if (option !== "startDelay") {
      assertDefinitionError(
        () => new Flow({ slug: "bad_options", [option]: value }),
        new RegExp(`^Flow "bad_options": option ${option} must be an integer ${range}`),
      );
    }
  }
  // The lower bounds themselves are fine.
  const edge = flow.step(
    { slug: "s", maxAttempts: 1, baseDelay: 1, timeout: 1, startDelay: 0 },
    handler,
  );
  assert.deepEqual(edge.getStep("s").options, {
    maxAttempts: 1,
    baseDelay: 1,
    timeout: 1,
    startDelay: 0,
  });
  assert.deepEqual(new Flow({ slug: "f", maxAttempts: 1, baseDelay: 1, timeout: 1 }).options, {
    maxAttempts: 1,
    baseDelay: 1,
    timeout: 1,
  });
});

Deno.test("unknown options and non-function handlers", () => {
  assertDefinitionError(
    () => untyped(flow).step({ slug: "s", maxAttempt: 2, retries: 1 }, handler),
    /^Flow "orders", step "s": unknown options maxAttempt, retries \(allowed: slug, dependsOn,/,
  );
  assertDefinitionError(
    () => untyped(flow).map({ slug: "s", source: "load" }, handler),
    /step "s": unknown option source \(allowed: slug, array,/,
  );
  assertDefinitionError(
    () => new Flow({ slug: "f", startDelay: 1 } as Loose),
    /^Flow "f": unknown option startDelay/,
  );
  assertDefinitionError(
    () => untyped(flow).step({ slug: "s" }, "not a function"),
    /^Flow "orders", step "s": the handler must be a function, got "not a function"$/,
  );
  assertDefinitionError(
    () => untyped(flow).step(null, handler),
    /^Flow "orders": step config must be an object, got null$/,
  );
});

Deno.test("builders never change the flow they are called on", () => {
  const before = flow.stepSlugs;
  const extended = flow.step({ slug: "ship", dependsOn: ["total"] }, handler);
  assert.notEqual(extended, flow);
  assert.deepEqual(flow.stepSlugs, ["load", "total"]);
  assert.deepEqual(before, ["load", "total"]);
  assert.deepEqual(extended.stepSlugs, ["load", "total", "ship"]);
  assert.equal(flow.getStep("ship" as string), undefined);
  // Two branches from one base stay independent, and a failed call leaves no trace.
  const left = flow.step({ slug: "branch" }, () => "left");
  const right = flow.step({ slug: "branch" }, () => "right");
  assert.equal(left.getStep("branch").handler({} as Loose, {} as Loose), "left");
  assert.equal(right.getStep("branch").handler({} as Loose, {} as Loose), "right");
  assert.throws(() => untyped(flow).step({ slug: "broken", dependsOn: ["nope"] }, handler));
  assert.deepEqual(flow.stepSlugs, ["load", "total"]);
});

Deno.test("definitions are read-only", () => {
  const step = flow.getStep("total");
  assert.ok(Object.isFrozen(step));
  assert.ok(Object.isFrozen(step.dependencies));
  assert.ok(Object.isFrozen(step.options));
  assert.ok(Object.isFrozen(flow.options));
  assert.ok(Object.isFrozen(flow.stepSlugs));
  assert.throws(() => (step.dependencies as string[]).push("x"), TypeError);
  assert.throws(() => ((flow.options as Loose).timeout = 1), TypeError);
  assert.throws(() => ((flow as Loose).slug = "other"), TypeError);
});

Deno.test("introspection", () => {
  const defined = new Flow<number[]>({ slug: "numbers", timeout: 10 })
    .map({ slug: "double", startDelay: 3 }, (n) => n * 2)
    .array({ slug: "evens", dependsOn: ["double"], maxAttempts: 1 }, ({ double }) => double)
    .map({ slug: "label", array: "evens" }, (n) => `#${n}`)
    .step({ slug: "report", dependsOn: ["label", "double"] }, ({ label }) => label.join());
  assert.equal(defined.slug, "numbers");
  assert.deepEqual(defined.options, { maxAttempts: 3, baseDelay: 5, timeout: 10 });
  assert.deepEqual(defined.stepSlugs, ["double", "evens", "label", "report"]);
  const summary = defined.stepSlugs.map((slug) => {
    const { stepType, declaredWith, dependencies, options } = untyped(defined).getStep(slug);
    return { slug, stepType, declaredWith, dependencies, options };
  });
  assert.deepEqual(summary, [
    {
      slug: "double",
      stepType: "map",
      declaredWith: "map",
      dependencies: [],
      options: { startDelay: 3 },
    },
    {
      slug: "evens",
      stepType: "single",
      declaredWith: "array",
      dependencies: ["double"],
      options: { maxAttempts: 1 },
    },
    { slug: "label", stepType: "map", declaredWith: "map", dependencies: ["evens"], options: {} },
    {
      slug: "report",
      stepType: "single",
      declaredWith: "step",
      dependencies: ["label", "double"],
      options: {},
    },
  ]);
  assert.equal(defined.getStep("double").handler(21, {} as Loose), 42);
  assert.equal((defined as AnyFlow).getStep("missing"), undefined);
});

Deno.test("errors are FlowDefinitionErrors carrying the slugs", () => {
  try {
    untyped(flow).step({ slug: "load" }, handler);
    assert.fail("expected an error");
  } catch (error) {
    assert.ok(error instanceof FlowDefinitionError);
    assert.ok(error instanceof Error);
    assert.equal(error.name, "FlowDefinitionError");
    assert.equal(error.flowSlug, "orders");
    assert.equal(error.stepSlug, "load");
  }
});
