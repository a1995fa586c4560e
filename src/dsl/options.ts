/** Retry and timing options of flows and steps, their defaults and their valid ranges. */
import { FlowDefinitionError } from "./errors.ts";
import { describe } from "./slug.ts";

/** Flow-wide defaults; each step may override them. */
export interface FlowOptions {
  /** Attempts per task, the first one included. Integer >= 1; default 3. */
  maxAttempts?: number;
  /** Seconds; a retry waits `baseDelay * 2^attempts` (0: retry at once). Integer >= 0; default 5. */
  baseDelay?: number;
  /** Seconds a task may run before it is aborted and retried. Integer >= 1; default 60. */
  timeout?: number;
}

export interface StepOptions extends FlowOptions {
  /** Seconds to wait after the step becomes ready before its tasks are visible. Integer >= 0. */
  startDelay?: number;
}

/** The SQL core's `create_flow` defaults, filled in wherever a flow's options are read. */
export const FLOW_DEFAULTS: Readonly<Required<FlowOptions>> = Object.freeze({
  maxAttempts: 3,
  baseDelay: 5,
  timeout: 60,
});

const FLOW_OPTION_MINIMUMS = { maxAttempts: 1, baseDelay: 0, timeout: 1 } as const;
const STEP_OPTION_MINIMUMS = { ...FLOW_OPTION_MINIMUMS, startDelay: 0 } as const;

/** Options are stored in Postgres `int` columns. */
const MAX_INT = 2_147_483_647;

/** Validated flow options with the defaults filled in. */
export function resolveFlowOptions(
  flowSlug: string,
  options: FlowOptions,
): Readonly<Required<FlowOptions>> {
  const given = pickOptions(flowSlug, undefined, options, FLOW_OPTION_MINIMUMS);
  return Object.freeze({ ...FLOW_DEFAULTS, ...given });
}

/** Validated step options; unset ones stay absent (the step inherits the flow's). */
export function resolveStepOptions(
  flowSlug: string,
  stepSlug: string,
  options: StepOptions,
): Readonly<StepOptions> {
  return Object.freeze(pickOptions(flowSlug, stepSlug, options, STEP_OPTION_MINIMUMS));
}

function pickOptions<K extends string>(
  flowSlug: string,
  stepSlug: string | undefined,
  options: Partial<Record<K, unknown>>,
  minimums: Readonly<Record<K, number>>,
): Partial<Record<K, number>> {
  const picked: Partial<Record<K, number>> = {};
  for (const key of Object.keys(minimums) as K[]) {
    const value = options[key];
    if (value === undefined) continue;
    const min = minimums[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > MAX_INT) {
      throw new FlowDefinitionError(
        flowSlug,
        stepSlug,
        `option ${key} must be an integer between ${min} and ${MAX_INT}, got ${describe(value)}`,
      );
    }
    picked[key] = value;
  }
  return picked;
}
