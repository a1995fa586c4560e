/**
 * Type rules of the flow DSL. `deno check` (and `deno test`, which type-checks first) fails
 * when a rule breaks: either an `Equal` assertion stops compiling, or a line marked
 * `@ts-expect-error` stops being an error. Lines that would also throw at run time are
 * wrapped in `assert.throws`, so the run-time rule is exercised too.
 */
import assert from "node:assert/strict";
import type { Sql } from "../src/db/connect.ts";
import {
  type AnyFlow,
  Flow,
  type FlowInput,
  type FlowOutput,
  type Json,
  type StepContext,
  type StepInput,
  type StepOutput,
} from "../src/dsl/mod.ts";

/** Exact type equality (distinguishes `any`, optional keys and readonly). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
function expectType<_T extends true>(): void {}

interface Input {
  url: string;
  tags: string[];
}

const base = new Flow<Input>({ slug: "types_flow" });

const flow = base
  .step({ slug: "fetch" }, (input) => ({ body: input.run.url, length: input.run.url.length }))
  .array({ slug: "words" }, ({ run }) => run.tags)
  .map({ slug: "upper", array: "words" }, (word) => word.toUpperCase())
  .step({ slug: "count", dependsOn: ["fetch", "upper"] }, async ({ fetch, upper }) => ({
    total: await Promise.resolve(fetch.length + upper.length),
  }))
  .step({ slug: "note", dependsOn: ["fetch"] }, () => null);

type F = typeof flow;

Deno.test("a root step's input is { run: <flow input> }", () => {
  expectType<Equal<StepInput<F, "fetch">, { run: Input }>>();
  base.step({ slug: "s" }, (input) => {
    expectType<Equal<typeof input, { run: Input }>>();
    return 1;
  });
});

Deno.test("a step's input has run plus exactly its dependencies' outputs", () => {
  expectType<
    Equal<
      StepInput<F, "count">,
      { run: Input; fetch: { body: string; length: number }; upper: string[] }
    >
  >();
  flow.step({ slug: "only_fetch", dependsOn: ["fetch"] }, (input) => {
    // @ts-expect-error `words` exists in the flow but is not a dependency of this step
    input.words;
    // @ts-expect-error nor is `count`
    input.count;
    return input.fetch.body;
  });
});

Deno.test("the handler's context is a typed StepContext", () => {
  base.step({ slug: "ctx" }, (_input, context) => {
    expectType<Equal<typeof context, StepContext>>();
    expectType<Equal<typeof context.sql, Sql>>();
    expectType<Equal<typeof context.signal, AbortSignal>>();
    expectType<Equal<typeof context.env, Record<string, string | undefined>>>();
    expectType<Equal<typeof context.stepTask.task_index, number>>();
    expectType<Equal<typeof context.rawMessage.message.run_id, string>>();
    // @ts-expect-error no such member
    context.nope;
    return 1;
  });
});

Deno.test("outputs: a single step's is the handler's (awaited), a map step's is an array", () => {
  expectType<Equal<StepOutput<F, "fetch">, { body: string; length: number }>>();
  expectType<Equal<StepOutput<F, "count">, { total: number }>>();
  expectType<Equal<StepOutput<F, "words">, string[]>>();
  expectType<Equal<StepOutput<F, "upper">, string[]>>();
  expectType<Equal<StepOutput<F, "note">, null>>();
});

Deno.test("a map handler gets one element of its source", () => {
  expectType<Equal<StepInput<F, "upper">, string>>();
  const roots = new Flow<{ id: number }[]>({ slug: "root_map" })
    .map({ slug: "ids" }, (item) => {
      expectType<Equal<typeof item, { id: number }>>();
      return item.id;
    })
    .map({ slug: "labels", array: "ids" }, (id) => {
      expectType<Equal<typeof id, number>>();
      return `#${id}`;
    });
  expectType<Equal<StepOutput<typeof roots, "labels">, string[]>>();
  // Tuples and readonly arrays are arrays too.
  new Flow<readonly [string, number]>({ slug: "tuple_map" }).map({ slug: "m" }, (item) => {
    expectType<Equal<typeof item, string | number>>();
    return item;
  });
});

Deno.test("a root map needs an array flow input", () => {
  assert.ok(base); // the definitions below are type errors, checked by deno check
  const _typeOnly = () => {
    // @ts-expect-error the flow input { url, tags } is not an array
    base.map({ slug: "m" }, (item) => item);
    // @ts-expect-error the default flow input (Json) is not known to be an array
    new Flow({ slug: "untyped" }).map({ slug: "m" }, (item) => item);
  };
});

Deno.test("a dependent map needs an array-returning source that exists", () => {
  // @ts-expect-error `fetch` returns an object, not an array
  assert.doesNotThrow(() => flow.map({ slug: "m", array: "fetch" }, (item) => item));
  // @ts-expect-error there is no step `nope`
  const unknownSource = () => flow.map({ slug: "m", array: "nope" }, (item) => item);
  assert.throws(unknownSource, /unknown step "nope"/);
  // @ts-expect-error a map takes its source from `array`, not `dependsOn`
  assert.throws(() => flow.map({ slug: "m", dependsOn: ["fetch"] }, (item) => item), /array/);
});

Deno.test(".array() handlers must return an array", () => {
  base.array({ slug: "ok" }, () => Promise.resolve([1, 2, 3]));
  // @ts-expect-error returns a string
  base.array({ slug: "bad" }, () => "abc");
  // @ts-expect-error returns an object
  base.array({ slug: "bad" }, () => Promise.resolve({ items: [] }));
});

Deno.test("dependsOn accepts only steps defined before", () => {
  // @ts-expect-error no step `missing`
  assert.throws(() => flow.step({ slug: "s", dependsOn: ["missing"] }, () => 1), /"missing"/);
  // @ts-expect-error `later` is defined after this step: forward references are refused
  const forward = () => base.step({ slug: "early", dependsOn: ["later"] }, () => 1);
  assert.throws(forward, /"later"/);
  // @ts-expect-error `run` is the flow input, not a step
  assert.throws(() => flow.step({ slug: "s", dependsOn: ["run"] }, () => 1), /run/);
});

Deno.test("duplicate, reserved and malformed slugs are type errors", () => {
  // @ts-expect-error `fetch` already exists
  assert.throws(() => flow.step({ slug: "fetch" }, () => 1), /already defined/);
  // @ts-expect-error also when the duplicate is declared with another method
  assert.throws(() => flow.map({ slug: "upper", array: "words" }, (w) => w), /already defined/);
  // @ts-expect-error `run` is reserved for the flow input
  assert.throws(() => base.step({ slug: "run" }, () => 1), /reserved/);
  // @ts-expect-error hyphens are not allowed
  assert.throws(() => base.step({ slug: "bad-slug" }, () => 1), /must start with/);
  // @ts-expect-error must not start with a digit
  assert.throws(() => base.step({ slug: "1st" }, () => 1), /must start with/);
  // @ts-expect-error must not be empty
  assert.throws(() => base.step({ slug: "" }, () => 1), /empty/);
  // A slug only known at run time is checked at run time.
  const dynamic: string = "dyn_" + "amic";
  assert.equal(base.step({ slug: dynamic }, () => 1).stepSlugs[0], "dyn_amic");
});

Deno.test("handler outputs must be JSON-compatible", () => {
  interface Page {
    title: string;
    note?: string;
    links: { href: string }[];
  }
  type Tree = { value: number; children: Tree[] };
  // Accepted: JSON values, interfaces, optional keys, async handlers, recursive types.
  base
    .step({ slug: "null_out" }, () => null)
    .step({ slug: "number_out" }, () => 0)
    .step({ slug: "string_out" }, () => "")
    .step({ slug: "boolean_out" }, () => false)
    .step({ slug: "array_out" }, () => [1, "two", null, [true]])
    .step({ slug: "object_out" }, () => ({ a: { b: [{ c: null }] } }))
    .step({ slug: "interface_out" }, (): Page => ({ title: "t", links: [] }))
    .step({ slug: "async_out" }, async () => ({ ok: await Promise.resolve(true) }))
    .step({ slug: "json_out" }, (): Json => ({ any: ["json"] }))
    .step({ slug: "tree_out" }, (): Tree => ({ value: 1, children: [] }))
    .step({ slug: "never_out" }, (): never => {
      throw new Error("always fails");
    });

  // @ts-expect-error a function
  base.step({ slug: "s" }, () => () => 1);
  // @ts-expect-error undefined
  base.step({ slug: "s" }, () => undefined);
  // @ts-expect-error no return value (void)
  base.step({ slug: "s" }, () => {});
  // @ts-expect-error an async handler with no return value
  base.step({ slug: "s" }, async () => void await Promise.resolve(1));
  // @ts-expect-error a symbol
  base.step({ slug: "s" }, () => Symbol("x"));
  // @ts-expect-error a bigint
  base.step({ slug: "s" }, () => 1n);
  // @ts-expect-error a Date has methods and would come back as a string
  base.step({ slug: "s" }, () => new Date());
  // @ts-expect-error a Map
  base.step({ slug: "s" }, () => new Map<string, number>());
  // @ts-expect-error a function nested in an object in an array
  base.step({ slug: "s" }, () => ({ items: [{ run: () => 1 }] }));
  // @ts-expect-error a property that may be present but undefined
  base.step({ slug: "s" }, (): { a: number | undefined } => ({ a: undefined }));
  // @ts-expect-error unknown is not known to be JSON
  base.step({ slug: "s" }, (): unknown => 1);
  // @ts-expect-error map task outputs are checked too
  base.step({ slug: "list" }, () => [1]).map({ slug: "m", array: "list" }, () => undefined);
  // @ts-expect-error and array elements of .array() steps
  base.array({ slug: "s" }, () => [() => 1]);
});

Deno.test("FlowInput and FlowOutput read the flow's input and its leaf steps' outputs", () => {
  expectType<Equal<FlowInput<F>, Input>>();
  // fetch, words and upper have dependents; count and note are leaves.
  expectType<Equal<FlowOutput<F>, { count: { total: number }; note: null }>>();
  const roots = base.step({ slug: "a" }, () => 1).step({ slug: "b" }, () => "b");
  expectType<Equal<FlowOutput<typeof roots>, { a: number; b: string }>>();
  expectType<Equal<FlowInput<typeof roots>, Input>>();
  // The untyped default input is any JSON value.
  expectType<Equal<FlowInput<Flow>, Json>>();
});

Deno.test("getStep is typed for known slugs; every flow is an AnyFlow", () => {
  const step = flow.getStep("count");
  expectType<
    Equal<
      Parameters<typeof step.handler>[0],
      { run: Input; fetch: { body: string; length: number }; upper: string[] }
    >
  >();
  expectType<Equal<Awaited<ReturnType<typeof step.handler>>, { total: number }>>();
  expectType<
    Equal<
      ReturnType<typeof flow.getStep<"upper">>["handler"] extends
        (i: string, c: StepContext) => unknown ? true
        : false,
      true
    >
  >();
  const unknownStep = (flow as AnyFlow).getStep("whatever");
  expectType<Equal<typeof unknownStep, import("../src/dsl/mod.ts").StepDefinition | undefined>>();
  const flows: AnyFlow[] = [flow, base, new Flow<number[]>({ slug: "other" })];
  assert.equal(flows.length, 3);
});

Deno.test("builders return new flows with the new step's type; the receiver keeps its type", () => {
  const one = base.step({ slug: "one" }, () => 1);
  const two = one.step({ slug: "two", dependsOn: ["one"] }, ({ one }) => one + 1);
  expectType<Equal<FlowOutput<typeof one>, { one: number }>>();
  expectType<Equal<FlowOutput<typeof two>, { two: number }>>();
  // @ts-expect-error `two` was added to the new flow, not to `one`
  assert.throws(() => one.step({ slug: "three", dependsOn: ["two"] }, () => 1), /"two"/);
});

Deno.test("options are typed", () => {
  base.step({ slug: "opts", maxAttempts: 5, baseDelay: 2, timeout: 30, startDelay: 0 }, () => 1);
  // @ts-expect-error a typo'd option is refused
  assert.throws(() => base.step({ slug: "opts", maxAttempt: 5 }, () => 1), /maxAttempt/);
  // @ts-expect-error options are numbers
  assert.throws(() => base.step({ slug: "opts", timeout: "30" }, () => 1), /timeout/);
  // @ts-expect-error startDelay is a step option, not a flow option
  assert.throws(() => new Flow({ slug: "f", startDelay: 1 }), /startDelay/);
});

Deno.test("slugs only known at run time: TypeScript stops checking what it cannot know", () => {
  const names: string[] = ["first", "second"];
  const dynamic = base.step({ slug: names[0] }, () => 1);
  // Later literal slugs are not taken for duplicates of the dynamic one,
  const next = dynamic.step({ slug: "literal", dependsOn: [names[0]] }, (input) => {
    // whose output type is unknown,
    expectType<Equal<(typeof input)[string], unknown>>();
    return 2;
  });
  // while literal steps keep their types,
  expectType<Equal<StepOutput<typeof next, "literal">, number>>();
  // and literal duplicates are still caught.
  // @ts-expect-error `literal` exists
  assert.throws(() => next.step({ slug: "literal" }, () => 3), /already defined/);
  assert.deepEqual(next.stepSlugs, ["first", "literal"]);
});
