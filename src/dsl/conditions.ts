/**
 * Step conditions (pgflow 0.14): `if` / `ifNot` JSON containment patterns, and what an unmet
 * condition (`whenUnmet`) or a task out of attempts (`whenExhausted`) does to the step.
 */
import { FlowDefinitionError } from "./errors.ts";
import type { Json } from "./json.ts";
import { describe } from "./slug.ts";

/** `fail` the run, `skip` the step, or `skip-cascade`: skip it and every step after it. */
export type WhenMode = "fail" | "skip" | "skip-cascade";

export const WHEN_MODES: readonly WhenMode[] = Object.freeze(["fail", "skip", "skip-cascade"]);

/** pgflow's defaults: an unmet condition skips the step, exhausted retries fail the run. */
export const CONDITION_DEFAULTS = Object.freeze({
  whenUnmet: "skip" as WhenMode,
  whenExhausted: "fail" as WhenMode,
});

/**
 * A pattern the step's input must contain (PostgreSQL's `jsonb @>`): any subset of an
 * object's keys, each value a pattern itself; an array pattern's elements must all occur.
 */
export type ContainmentPattern<T> = T extends readonly (infer E)[]
  ? readonly ContainmentPattern<E>[]
  : T extends object ? { [K in keyof T]?: ContainmentPattern<T[K]> }
  : T;

/** The condition options of a step, as given to `.step()`, `.array()` and `.map()`. */
export interface ConditionOptions<TPattern = Json> {
  /**
   * Run only when the input contains this pattern: the flow input for a root step,
   * `{ <dep>: <output> }` of its dependencies otherwise.
   */
  if?: TPattern;
  /** Run only when the input does not contain this pattern. */
  ifNot?: TPattern;
  /** What an unmet condition does. Default `skip`. */
  whenUnmet?: WhenMode;
  /** What a task out of attempts does. Default `fail` (the run fails). */
  whenExhausted?: WhenMode;
}

/** A step's validated condition: only the options set on the step. */
export interface StepCondition {
  readonly if?: { readonly [key: string]: Json };
  readonly ifNot?: { readonly [key: string]: Json };
  readonly whenUnmet?: WhenMode;
  readonly whenExhausted?: WhenMode;
}

export const CONDITION_KEYS = ["if", "ifNot", "whenUnmet", "whenExhausted"] as const;

/** Validates the condition options of a step config; unset ones stay absent. */
export function resolveCondition(
  flowSlug: string,
  stepSlug: string,
  config: Record<string, unknown>,
): Readonly<StepCondition> {
  const fail = (problem: string) => new FlowDefinitionError(flowSlug, stepSlug, problem);
  const picked: Record<string, unknown> = {};
  for (const key of ["if", "ifNot"] as const) {
    const value = config[key];
    if (value === undefined) continue;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw fail(
        `option ${key} must be a JSON object (a containment pattern), got ${describe(value)}`,
      );
    }
    const copy = jsonCopy(value);
    if (copy === undefined) {
      throw fail(
        `option ${key} must be plain JSON (no functions, undefined or non-finite numbers)`,
      );
    }
    picked[key] = Object.freeze(copy);
  }
  for (const key of ["whenUnmet", "whenExhausted"] as const) {
    const value = config[key];
    if (value === undefined) continue;
    if (!WHEN_MODES.includes(value as WhenMode)) {
      throw fail(`option ${key} must be "fail", "skip" or "skip-cascade", got ${describe(value)}`);
    }
    picked[key] = value;
  }
  return Object.freeze(picked) as Readonly<StepCondition>;
}

/** A deep copy through JSON, or undefined when the value would not survive the round trip. */
function jsonCopy(value: unknown): Json | undefined {
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch {
    return undefined;
  }
  if (!sameJson(value, JSON.parse(text))) return undefined;
  return JSON.parse(text);
}

function sameJson(given: unknown, parsed: unknown): boolean {
  if (typeof given === "number") return Number.isFinite(given) && given === parsed;
  if (given === null || typeof given === "string" || typeof given === "boolean") {
    return given === parsed;
  }
  if (Array.isArray(given)) {
    return Array.isArray(parsed) && given.length === parsed.length &&
      given.every((item, i) => sameJson(item, parsed[i]));
  }
  if (typeof given === "object" && Object.getPrototypeOf(given) === Object.prototype) {
    const keys = Object.keys(given as object);
    const parsedObject = parsed as Record<string, unknown>;
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) &&
      keys.length === Object.keys(parsedObject).length &&
      keys.every((key) => sameJson((given as Record<string, unknown>)[key], parsedObject[key]));
  }
  return false;
}
