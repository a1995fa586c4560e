/**
 * Run-time validation of one new step against the steps already defined: the same rules
 * the types enforce, for JavaScript callers and slugs only known at run time.
 */
import { CONDITION_KEYS, resolveCondition } from "./conditions.ts";
import { FlowDefinitionError } from "./errors.ts";
import { resolveStepOptions } from "./options.ts";
import { describe, RESERVED_SLUG, slugProblem } from "./slug.ts";
import type { DeclaredWith, StepDefinition } from "./step_definition.ts";

const OPTION_KEYS = ["maxAttempts", "baseDelay", "timeout", "startDelay", ...CONDITION_KEYS];
const KEYS: Record<DeclaredWith, readonly string[]> = {
  step: ["slug", "dependsOn", ...OPTION_KEYS],
  array: ["slug", "dependsOn", ...OPTION_KEYS],
  map: ["slug", "array", "dependsOn", ...OPTION_KEYS],
};

/** A checked, frozen definition of the step `config` describes; throws FlowDefinitionError. */
export function buildStep(
  flowSlug: string,
  defined: readonly StepDefinition[],
  declaredWith: DeclaredWith,
  config: unknown,
  handler: unknown,
): StepDefinition {
  const fail = (stepSlug: string | undefined, problem: string) =>
    new FlowDefinitionError(flowSlug, stepSlug, problem);
  if (typeof config !== "object" || config === null) {
    throw fail(undefined, `step config must be an object, got ${describe(config)}`);
  }
  const fields = config as Record<string, unknown>;
  const slug = typeof fields.slug === "string" ? fields.slug : describe(fields.slug);
  const problem = slugProblem(fields.slug);
  if (problem) throw fail(slug, problem);
  if (defined.some((step) => step.slug === slug)) {
    throw fail(slug, "a step with this slug is already defined");
  }
  rejectUnknownKeys(flowSlug, slug, fields, KEYS[declaredWith]);

  const checkDependency = (dep: string) => {
    if (dep === RESERVED_SLUG) {
      throw fail(slug, `"${RESERVED_SLUG}" is the flow input, not a step to depend on`);
    }
    if (!defined.some((step) => step.slug === dep)) {
      const known = defined.length ? defined.map((step) => step.slug).join(", ") : "none";
      throw fail(
        slug,
        `depends on unknown step "${dep}" (steps must be defined before their dependents; ` +
          `defined so far: ${known})`,
      );
    }
  };

  const dependsOn = fields.dependsOn;
  const listed: string[] = [];
  if (dependsOn !== undefined) {
    if (!Array.isArray(dependsOn)) {
      throw fail(
        slug,
        `option dependsOn must be an array of step slugs, got ${describe(dependsOn)}`,
      );
    }
    for (const dep of dependsOn) {
      if (typeof dep !== "string") {
        throw fail(slug, `option dependsOn must contain step slugs, got ${describe(dep)}`);
      }
      if (listed.includes(dep)) throw fail(slug, `option dependsOn lists "${dep}" twice`);
      checkDependency(dep);
      listed.push(dep);
    }
  }

  let dependencies = listed;
  if (declaredWith === "map") {
    const source = fields.array;
    if (source !== undefined && typeof source !== "string") {
      throw fail(slug, `option array must be a step slug, got ${describe(source)}`);
    }
    if (source !== undefined) checkDependency(source);
    // One source at most, named by `array`; `dependsOn` may only repeat it.
    const extra = listed.filter((dep) => dep !== source);
    if (extra.length) {
      const sources = [...(source === undefined ? [] : [source]), ...extra];
      const hint = source === undefined && extra.length === 1 ? `; use array: "${extra[0]}"` : "";
      throw fail(
        slug,
        "a map step takes its array from one source (option array), got " +
          sources.map((s) => `"${s}"`).join(" and ") + hint,
      );
    }
    dependencies = source === undefined ? [] : [source];
  }

  if (typeof handler !== "function") {
    throw fail(slug, `the handler must be a function, got ${describe(handler)}`);
  }
  return Object.freeze({
    slug,
    stepType: declaredWith === "map" ? "map" : "single",
    declaredWith,
    dependencies: Object.freeze(dependencies),
    options: resolveStepOptions(flowSlug, slug, fields),
    condition: resolveCondition(flowSlug, slug, fields),
    handler: handler as StepDefinition["handler"],
  });
}

export function rejectUnknownKeys(
  flowSlug: string,
  stepSlug: string | undefined,
  config: object,
  allowed: readonly string[],
): void {
  const unknown = Object.keys(config).filter((key) => !allowed.includes(key));
  if (unknown.length) {
    const plural = unknown.length > 1 ? "s" : "";
    throw new FlowDefinitionError(
      flowSlug,
      stepSlug,
      `unknown option${plural} ${unknown.join(", ")} (allowed: ${allowed.join(", ")})`,
    );
  }
}
