/** Flow -> the SQL calls that store its definition (`pgflow.create_flow`, `pgflow.add_step`). */
import type { AnyFlow } from "../dsl/flow.ts";
import type { Json } from "../dsl/json.ts";
import type { StepDefinition } from "../dsl/step_definition.ts";
import { sqlInteger, sqlString, sqlTextArray } from "./sql_literal.ts";
import { stepsInOrder } from "../dsl/steps_in_order.ts";

/**
 * One `SELECT pgflow.create_flow(...)`, then one `SELECT pgflow.add_step(...)` per step in
 * definition order (a topological order: dependencies are always defined first). Each
 * statement ends with `;`. The flow's options are always passed, defaults filled in, so
 * the stored flow matches `flowShape(flow)` whatever the SQL defaults are; a step passes
 * only the options set on it (the rest stay NULL and are inherited), `deps_slugs` only
 * when it has dependencies, `step_type` only for map steps, and pgflow 0.14's condition
 * arguments (`required_input_pattern`, `forbidden_input_pattern`, `when_unmet`,
 * `when_exhausted`) only when set.
 */
export function compileFlow(flow: AnyFlow): string[] {
  return [createFlowCall(flow), ...stepsInOrder(flow).map((step) => addStepCall(flow, step))];
}

function createFlowCall(flow: AnyFlow): string {
  const { maxAttempts, baseDelay, timeout } = flow.options;
  return call("create_flow", [
    ["flow_slug", sqlString(flow.slug)],
    ["max_attempts", sqlInteger(maxAttempts)],
    ["base_delay", sqlInteger(baseDelay)],
    ["timeout", sqlInteger(timeout)],
  ]);
}

function addStepCall(flow: AnyFlow, step: StepDefinition): string {
  const { maxAttempts, baseDelay, timeout, startDelay } = step.options;
  const args: [string, string | undefined][] = [
    ["flow_slug", sqlString(flow.slug)],
    ["step_slug", sqlString(step.slug)],
    ["deps_slugs", step.dependencies.length ? sqlTextArray(step.dependencies) : undefined],
    ["max_attempts", optionalInteger(maxAttempts)],
    ["base_delay", optionalInteger(baseDelay)],
    ["timeout", optionalInteger(timeout)],
    ["start_delay", optionalInteger(startDelay)],
    ["step_type", step.stepType === "map" ? sqlString("map") : undefined],
    ["required_input_pattern", optionalJsonb(step.condition?.if)],
    ["forbidden_input_pattern", optionalJsonb(step.condition?.ifNot)],
    ["when_unmet", optionalString(step.condition?.whenUnmet)],
    ["when_exhausted", optionalString(step.condition?.whenExhausted)],
  ];
  return call("add_step", args);
}

function call(fn: string, args: readonly [string, string | undefined][]): string {
  const named = args.filter(([, value]) => value !== undefined).map(([name, value]) =>
    `${name} => ${value}`
  );
  return `SELECT pgflow.${fn}(${named.join(", ")});`;
}

function optionalString(value: string | undefined): string | undefined {
  return value === undefined ? undefined : sqlString(value);
}

function optionalJsonb(value: Json | undefined): string | undefined {
  return value === undefined ? undefined : `${sqlString(JSON.stringify(value))}::jsonb`;
}

function optionalInteger(value: number | undefined): string | undefined {
  return value === undefined ? undefined : sqlInteger(value);
}
