/**
 * The canonical JSON description of a flow's structure, in pgflow's format. The SQL core
 * builds the same object from the stored definition (`pgflow._get_flow_shape`); it compares
 * structure only (steps, types, dependencies), options being tunable in the database.
 */
import type { AnyFlow } from "./flow.ts";
import { CONDITION_DEFAULTS, type WhenMode } from "./conditions.ts";
import type { Json } from "./json.ts";
import type { StepType } from "./step_definition.ts";
import { stepsInOrder } from "./steps_in_order.ts";

export interface FlowShape {
  /** The flow's options, defaults filled in. */
  options: { maxAttempts: number; baseDelay: number; timeout: number };
  /** In definition order. */
  steps: StepShape[];
}

export interface StepShape {
  slug: string;
  stepType: StepType;
  /** Sorted in code-unit order (JS default sort), so declaration order does not matter. */
  dependencies: string[];
  /** pgflow 0.14's condition keys, each left out at its default (as the SQL core's shape does). */
  whenUnmet?: WhenMode;
  whenExhausted?: WhenMode;
  requiredInputPattern?: PatternShape;
  forbiddenInputPattern?: PatternShape;
  /** The options the step sets; left out (as pgflow does) where it inherits the flow's. */
  options?: StepShapeOptions;
}

/** pgflow's encoding of an optional pattern. */
export type PatternShape = { defined: false } | { defined: true; value: Json };

export interface StepShapeOptions {
  maxAttempts?: number;
  baseDelay?: number;
  timeout?: number;
  startDelay?: number;
}

/** Keys are built in a fixed order so that `JSON.stringify` of two equal shapes is equal too. */
export function flowShape(flow: AnyFlow): FlowShape {
  const { maxAttempts, baseDelay, timeout } = flow.options;
  return {
    options: { maxAttempts, baseDelay, timeout },
    steps: stepsInOrder(flow).map((step) => {
      const options: StepShapeOptions = {};
      for (const key of ["maxAttempts", "baseDelay", "timeout", "startDelay"] as const) {
        const value = step.options[key];
        if (value !== undefined && value !== null) options[key] = value;
      }
      const shape: StepShape = {
        slug: step.slug,
        stepType: step.stepType,
        dependencies: [...step.dependencies].sort(),
      };
      const condition = step.condition ?? {};
      if ((condition.whenUnmet ?? CONDITION_DEFAULTS.whenUnmet) !== CONDITION_DEFAULTS.whenUnmet) {
        shape.whenUnmet = condition.whenUnmet;
      }
      if (
        (condition.whenExhausted ?? CONDITION_DEFAULTS.whenExhausted) !==
          CONDITION_DEFAULTS.whenExhausted
      ) {
        shape.whenExhausted = condition.whenExhausted;
      }
      if (condition.if) {
        shape.requiredInputPattern = {
          defined: true,
          value: structuredClone(condition.if) as Json,
        };
      }
      if (condition.ifNot) {
        shape.forbiddenInputPattern = {
          defined: true,
          value: structuredClone(condition.ifNot) as Json,
        };
      }
      if (Object.keys(options).length) shape.options = options;
      return shape;
    }),
  };
}
