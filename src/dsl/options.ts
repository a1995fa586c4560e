/** Retry and timing options of flows and steps, their defaults and their valid ranges. */
import * as limits from "../limits.ts";
import { FlowDefinitionError } from "./errors.ts";
import { describe } from "./slug.ts";

/** Flow-wide defaults; each step may override them. */
export interface FlowOptions {
  /** Attempts per task, the first one included. Integer 1..1000; default 3. */
  maxAttempts?: number;
  /** Seconds; a retry waits `baseDelay * 2^attempts` (0: retry at once). Integer 0..86400; default 5. */
  baseDelay?: number;
  /** Seconds a task may run before it is aborted and retried. Integer 1..86400; default 60. */
  timeout?: number;
}

export interface StepOptions extends FlowOptions {
  /** Seconds to wait after the step becomes ready before its tasks are visible. Integer 0..604800. */
  startDelay?: number;
}

/** The SQL core's `create_flow` defaults, filled in wherever a flow's options are read. */
export const FLOW_DEFAULTS: Readonly<Required<FlowOptions>> = Object.freeze({
  maxAttempts: 3,
  baseDelay: 5,
  timeout: 60,
});

/**
 * The range of each option (inclusive), in seconds where it is a duration. The
 * SQL core enforces the same numbers (pgflow._option_bounds; a test checks they
 * agree); they keep the engine's arithmetic in range: timeout + 2 s is a pgmq
 * visibility timeout and timeout * 1000 ms a JS timer, retry delays are capped.
 */
export const OPTION_BOUNDS = Object.freeze({
  maxAttempts: Object.freeze({ min: limits.MIN_MAX_ATTEMPTS, max: limits.MAX_MAX_ATTEMPTS }),
  baseDelay: Object.freeze({ min: limits.MIN_BASE_DELAY, max: limits.MAX_BASE_DELAY }),
  timeout: Object.freeze({ min: limits.MIN_TIMEOUT, max: limits.MAX_TIMEOUT }),
  startDelay: Object.freeze({ min: limits.MIN_START_DELAY, max: limits.MAX_START_DELAY }),
});

type Bounds = Readonly<{ min: number; max: number }>;

const FLOW_OPTION_BOUNDS = {
  maxAttempts: OPTION_BOUNDS.maxAttempts,
  baseDelay: OPTION_BOUNDS.baseDelay,
  timeout: OPTION_BOUNDS.timeout,
} as const;

/** Validated flow options with the defaults filled in. */
export function resolveFlowOptions(
  flowSlug: string,
  options: FlowOptions,
): Readonly<Required<FlowOptions>> {
  const given = pickOptions(flowSlug, undefined, options, FLOW_OPTION_BOUNDS);
  return Object.freeze({ ...FLOW_DEFAULTS, ...given });
}

/** Validated step options; unset ones stay absent (the step inherits the flow's). */
export function resolveStepOptions(
  flowSlug: string,
  stepSlug: string,
  options: StepOptions,
): Readonly<StepOptions> {
  return Object.freeze(pickOptions(flowSlug, stepSlug, options, OPTION_BOUNDS));
}

function pickOptions<K extends string>(
  flowSlug: string,
  stepSlug: string | undefined,
  options: Partial<Record<K, unknown>>,
  bounds: Readonly<Record<K, Bounds>>,
): Partial<Record<K, number>> {
  const picked: Partial<Record<K, number>> = {};
  for (const key of Object.keys(bounds) as K[]) {
    const value = options[key];
    if (value === undefined) continue;
    const { min, max } = bounds[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new FlowDefinitionError(
        flowSlug,
        stepSlug,
        `option ${key} must be an integer between ${min} and ${max}, got ${describe(value)}`,
      );
    }
    picked[key] = value;
  }
  return picked;
}
