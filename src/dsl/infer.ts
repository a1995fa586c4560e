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

/** Leaves that may be skipped: the run's output leaves them out. */
type SkippableLeaf<TSteps extends StepMap, K extends keyof TSteps> = true extends
  (TSteps[K]["skippedAlone"] | TSteps[K]["skippedWithDependents"]) ? true : false;

/** A completed run's output: `{ <leaf slug>: <leaf output> }`, skippable leaves optional. */
export type FlowOutput<F> = Simplify<
  & {
    [K in LeafSlugs<StepsOf<F>> as SkippableLeaf<StepsOf<F>, K> extends true ? never : K]: StepsOf<
      F
    >[K]["output"];
  }
  & {
    [K in LeafSlugs<StepsOf<F>> as SkippableLeaf<StepsOf<F>, K> extends true ? K : never]?: StepsOf<
      F
    >[K]["output"];
  }
>;

/** What a step's handler receives (a map step: one element). */
export type StepInput<F, S extends keyof StepsOf<F>> = StepsOf<F>[S]["input"];

/** What dependents see of a step (a map step: the array of its tasks' outputs). */
export type StepOutput<F, S extends keyof StepsOf<F>> = StepsOf<F>[S]["output"];
