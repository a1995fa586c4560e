/** The flow DSL: build typed flows; the compiler and the worker read them. */
export {
  type AnyFlow,
  Flow,
  type FlowConfig,
  isFlow,
  type MapStepConfig,
  type SingleStepConfig,
  type TypedConditionOptions,
} from "./flow.ts";
export {
  CONDITION_DEFAULTS,
  type ConditionOptions,
  type ContainmentPattern,
  type StepCondition,
  WHEN_MODES,
  type WhenMode,
} from "./conditions.ts";
export type { RawMessage, StepContext, StepTask } from "./context.ts";
export { FlowDefinitionError } from "./errors.ts";
export type { FlowInput, FlowOutput, StepInput, StepOutput } from "./infer.ts";
export type { IsJson, Json, NonJson } from "./json.ts";
export { FLOW_DEFAULTS, type FlowOptions, OPTION_BOUNDS, type StepOptions } from "./options.ts";
export { isValidSlug, MAX_FLOW_SLUG_LENGTH, MAX_STEP_SLUG_LENGTH, RESERVED_SLUG } from "./slug.ts";
export type { DeclaredWith, StepDefinition, StepHandler, StepType } from "./step_definition.ts";
export type { StepMap, StepTypes } from "./types.ts";
