/** The run-time description of one step, as `flow.getStep(slug)` returns it. */
import type { StepCondition } from "./conditions.ts";
import type { StepContext } from "./context.ts";
import type { StepOptions } from "./options.ts";

/** `single`: one task gets the whole input; `map`: one task per element of an array. */
export type StepType = "single" | "map";

/** The builder method a step was declared with (`.array` is a single step returning an array). */
export type DeclaredWith = "step" | "array" | "map";

/** A handler: gets the step input (a map task: one element) and the context, returns JSON. */
export type StepHandler<TInput, TOutput> = (
  input: TInput,
  context: StepContext,
) => TOutput | Promise<TOutput>;

export interface StepDefinition<TInput = unknown, TOutput = unknown> {
  readonly slug: string;
  readonly stepType: StepType;
  readonly declaredWith: DeclaredWith;
  /** Slugs of the steps whose outputs this step waits for, as declared; a map has 0 or 1. */
  readonly dependencies: readonly string[];
  /** Only the options set on the step; unset ones are inherited from the flow. */
  readonly options: Readonly<StepOptions>;
  /** Only the condition options set on the step (`if`, `ifNot`, `whenUnmet`, `whenExhausted`). */
  readonly condition?: Readonly<StepCondition>;
  /**
   * Method syntax on purpose: its parameters are compared bivariantly, so a fully typed
   * definition is still assignable to `StepDefinition<unknown, unknown>` (what the worker
   * handles, with input from the database).
   */
  handler(input: TInput, context: StepContext): TOutput | Promise<TOutput>;
}
