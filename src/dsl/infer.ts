/** Helper types that read a built flow's input and outputs, e.g. for typing a client. */
import type { Flow } from "./flow.ts";
import type { Simplify, StepMap } from "./types.ts";

/** The steps recorded in a flow's type. */
type StepsOf<F> = F extends Flow<infer _Input, infer TSteps> ? TSteps : never;

/** Slugs of the steps no other step depends on: their outputs form the run output. */
type LeafSlugs<TSteps extends StepMap> = Exclude<
  keyof TSteps & string,
  TSteps[keyof TSteps]["dependencies"]
>;

/** What `start_flow` must be given. */
export type FlowInput<F> = F extends Flow<infer TInput, infer _Steps> ? TInput : never;

/** A completed run's output: `{ <leaf slug>: <leaf output> }`. */
export type FlowOutput<F> = Simplify<
  { [K in LeafSlugs<StepsOf<F>>]: StepsOf<F>[K]["output"] }
>;

/** What a step's handler receives (a map step: one element). */
export type StepInput<F, S extends keyof StepsOf<F>> = StepsOf<F>[S]["input"];

/** What dependents see of a step (a map step: the array of its tasks' outputs). */
export type StepOutput<F, S extends keyof StepsOf<F>> = StepsOf<F>[S]["output"];
