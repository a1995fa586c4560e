import type { AnyFlow } from "./flow.ts";
import type { StepDefinition } from "./step_definition.ts";

/** A flow's steps in definition order (a topological order: dependencies come first). */
export function stepsInOrder(flow: AnyFlow): StepDefinition[] {
  return flow.stepSlugs.map((slug) => {
    const step = flow.getStep(slug);
    // Only a hand-made AnyFlow can list a step it does not define.
    if (!step) throw new Error(`Flow "${flow.slug}": step "${slug}" is listed but not defined`);
    return step;
  });
}
