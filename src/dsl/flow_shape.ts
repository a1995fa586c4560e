/**
 * The canonical JSON description of a flow's structure. The SQL core builds the same object
 * from the stored definition; equal shapes mean the database runs what the code defines.
 */
import type { AnyFlow } from "./flow.ts";
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
  /** `null` where the step inherits the flow's option. */
  options: {
    maxAttempts: number | null;
    baseDelay: number | null;
    timeout: number | null;
    startDelay: number | null;
  };
}

/** Keys are built in a fixed order so that `JSON.stringify` of two equal shapes is equal too. */
export function flowShape(flow: AnyFlow): FlowShape {
  const { maxAttempts, baseDelay, timeout } = flow.options;
  return {
    options: { maxAttempts, baseDelay, timeout },
    steps: stepsInOrder(flow).map((step) => ({
      slug: step.slug,
      stepType: step.stepType,
      dependencies: [...step.dependencies].sort(),
      options: {
        maxAttempts: step.options.maxAttempts ?? null,
        baseDelay: step.options.baseDelay ?? null,
        timeout: step.options.timeout ?? null,
        startDelay: step.options.startDelay ?? null,
      },
    })),
  };
}
