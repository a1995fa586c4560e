/** The immutable, typed flow builder. */
import { buildStep, rejectUnknownKeys } from "./build_step.ts";
import type { ContainmentPattern, WhenMode } from "./conditions.ts";
import { FlowDefinitionError } from "./errors.ts";
import type { Json } from "./json.ts";
import { type FlowOptions, resolveFlowOptions, type StepOptions } from "./options.ts";
import { describe, slugProblem } from "./slug.ts";
import type { StepDefinition, StepHandler } from "./step_definition.ts";
import type {
  AddStep,
  ConditionInput,
  ElementOf,
  MapSource,
  MapSourceCheck,
  NoSteps,
  OutputCheck,
  SingleStepInput,
  SkipFlags,
  SlugCheck,
  StepMap,
} from "./types.ts";

/** `new Flow({ slug, ...options })`. */
export interface FlowConfig extends FlowOptions {
  slug: string;
}

/**
 * Condition options with their types as given (`TIf`, `TIfNot` are the patterns, or
 * `undefined` when absent), so the flow's types know which steps may be skipped.
 */
export interface TypedConditionOptions<
  TIf = undefined,
  TIfNot = undefined,
  TUnmet extends WhenMode = "skip",
  TExhausted extends WhenMode = "fail",
> {
  /**
   * Run only when the input contains this pattern: the flow input for a root step,
   * `{ <dep>: <output> }` of its dependencies otherwise.
   */
  if?: TIf;
  /** Run only when the input does not contain this pattern. */
  ifNot?: TIfNot;
  /** What an unmet condition does: `fail` the run, `skip` the step (default), `skip-cascade`. */
  whenUnmet?: TUnmet;
  /** What a task out of attempts does: `fail` the run (default), `skip`, `skip-cascade`. */
  whenExhausted?: TExhausted;
}

/** Options of `.step()` and `.array()`. */
export interface SingleStepConfig<
  TSlug extends string,
  TDeps extends string,
  TIf = undefined,
  TIfNot = undefined,
  TUnmet extends WhenMode = "skip",
  TExhausted extends WhenMode = "fail",
> extends StepOptions, TypedConditionOptions<TIf, TIfNot, TUnmet, TExhausted> {
  slug: TSlug;
  /** Steps whose outputs this step needs; each must be defined before it. */
  dependsOn?: readonly TDeps[];
}

/** Options of `.map()`. */
export interface MapStepConfig<
  TSlug extends string,
  TSource extends string,
  TIf = undefined,
  TIfNot = undefined,
  TUnmet extends WhenMode = "skip",
  TExhausted extends WhenMode = "fail",
> extends StepOptions, TypedConditionOptions<TIf, TIfNot, TUnmet, TExhausted> {
  slug: TSlug;
  /** The step whose array output is mapped; omit it to map over the flow input. */
  array?: TSource;
}

/** A pattern for a step's condition input, or `undefined` (no condition). */
type PatternFor<TInput, TSteps extends StepMap, TDeps extends string> =
  | ContainmentPattern<ConditionInput<TInput, TSteps, TDeps>>
  | undefined;

/**
 * What code that runs or compiles flows needs, without the builder's type parameters:
 * every `Flow` is assignable to it.
 */
export interface AnyFlow {
  readonly slug: string;
  /** The flow's options with the defaults (3 attempts, 5 s base delay, 60 s timeout) filled in. */
  readonly options: Readonly<Required<FlowOptions>>;
  /** Step slugs in definition order, which is a topological order. */
  readonly stepSlugs: readonly string[];
  getStep(slug: string): StepDefinition | undefined;
}

/** Marks flows across copies of this module (a flow file may import another copy). */
const FLOW_BRAND = Symbol.for("edgeflow.Flow");

/** `true` for any edgeflow `Flow`, even one built by another copy of this module. */
export function isFlow(value: unknown): value is AnyFlow {
  return typeof value === "object" && value !== null && FLOW_BRAND in value;
}

const FLOW_KEYS = ["slug", "maxAttempts", "baseDelay", "timeout"];

/** What `.step()` and `.array()` record about a step with one task, for type inference. */
type SingleStepEntry<
  TInput,
  TSteps extends StepMap,
  TDeps extends keyof TSteps & string,
  TOutput,
  TIf,
  TIfNot,
  TUnmet extends WhenMode,
  TExhausted extends WhenMode,
> =
  & {
    input: SingleStepInput<TInput, TSteps, TDeps>;
    handlerOutput: TOutput;
    output: TOutput;
    dependencies: TDeps;
  }
  & SkipFlags<TSteps, TDeps, TIf, TIfNot, TUnmet, TExhausted>;

/**
 * A DAG of steps. Each builder call validates the new step and returns a new `Flow`; the
 * receiver never changes, so a partial flow can be shared and extended safely.
 *
 * `TInput` is the flow input (what `start_flow` gets); `TSteps` is inferred.
 */
export class Flow<TInput = Json, TSteps extends StepMap = NoSteps> implements AnyFlow {
  readonly #slug: string;
  readonly #options: Readonly<Required<FlowOptions>>;
  #steps: readonly StepDefinition[] = Object.freeze([]);
  #stepSlugs: readonly string[] = Object.freeze([]);

  constructor(config: FlowConfig) {
    const slug = (config as Partial<FlowConfig> | undefined)?.slug;
    const name = typeof slug === "string" ? slug : describe(slug);
    if (typeof config !== "object" || config === null) {
      throw new FlowDefinitionError(name, undefined, "the flow config must be an object");
    }
    const problem = slugProblem(slug, "flow");
    if (problem) throw new FlowDefinitionError(name, undefined, problem);
    rejectUnknownKeys(name, undefined, config, FLOW_KEYS);
    this.#slug = name;
    this.#options = resolveFlowOptions(name, config);
    Object.defineProperty(this, FLOW_BRAND, { value: true });
  }

  get slug(): string {
    return this.#slug;
  }

  get options(): Readonly<Required<FlowOptions>> {
    return this.#options;
  }

  get stepSlugs(): readonly string[] {
    return this.#stepSlugs;
  }

  /** A step's definition: typed for a known literal slug, `undefined` for an unknown one. */
  getStep<S extends keyof TSteps & string>(
    slug: S,
  ): StepDefinition<TSteps[S]["input"], TSteps[S]["handlerOutput"]>;
  getStep(slug: string): StepDefinition | undefined;
  getStep(slug: string): StepDefinition | undefined {
    return this.#steps.find((step) => step.slug === slug);
  }

  /**
   * A step with one task. Its handler gets `{ run: <flow input>, <dep>: <dep output>, ... }`
   * for exactly the steps in `dependsOn`.
   */
  step<
    TSlug extends string,
    TDeps extends keyof TSteps & string = never,
    TOutput = never,
    TIf extends PatternFor<TInput, TSteps, TDeps> = undefined,
    TIfNot extends PatternFor<TInput, TSteps, TDeps> = undefined,
    TUnmet extends WhenMode = "skip",
    TExhausted extends WhenMode = "fail",
  >(
    config:
      & SingleStepConfig<TSlug, TDeps, TIf, TIfNot, TUnmet, TExhausted>
      & SlugCheck<TSlug, TSteps>,
    handler:
      & StepHandler<SingleStepInput<TInput, TSteps, TDeps>, TOutput>
      & OutputCheck<TOutput>,
  ): Flow<
    TInput,
    AddStep<
      TSteps,
      TSlug,
      SingleStepEntry<TInput, TSteps, TDeps, TOutput, TIf, TIfNot, TUnmet, TExhausted>
    >
  > {
    return this.#with(buildStep(this.#slug, this.#steps, "step", config, handler));
  }

  /** Like `.step()`, but the handler must return an array (typically what a `.map()` consumes). */
  array<
    TSlug extends string,
    TDeps extends keyof TSteps & string = never,
    TOutput extends readonly unknown[] = never,
    TIf extends PatternFor<TInput, TSteps, TDeps> = undefined,
    TIfNot extends PatternFor<TInput, TSteps, TDeps> = undefined,
    TUnmet extends WhenMode = "skip",
    TExhausted extends WhenMode = "fail",
  >(
    config:
      & SingleStepConfig<TSlug, TDeps, TIf, TIfNot, TUnmet, TExhausted>
      & SlugCheck<TSlug, TSteps>,
    handler:
      & StepHandler<SingleStepInput<TInput, TSteps, TDeps>, TOutput>
      & OutputCheck<TOutput>,
  ): Flow<
    TInput,
    AddStep<
      TSteps,
      TSlug,
      SingleStepEntry<TInput, TSteps, TDeps, TOutput, TIf, TIfNot, TUnmet, TExhausted>
    >
  > {
    return this.#with(buildStep(this.#slug, this.#steps, "array", config, handler));
  }

  /**
   * One task per element of an array: the flow input (no `array`) or the output of the step
   * named by `array`. Each task gets only its element; the step's output is the array of the
   * tasks' outputs, in order.
   */
  map<
    TSlug extends string,
    TSource extends keyof TSteps & string = never,
    TOutput = never,
    TIf extends PatternFor<TInput, TSteps, TSource> = undefined,
    TIfNot extends PatternFor<TInput, TSteps, TSource> = undefined,
    TUnmet extends WhenMode = "skip",
    TExhausted extends WhenMode = "fail",
  >(
    config:
      & MapStepConfig<TSlug, TSource, TIf, TIfNot, TUnmet, TExhausted>
      & SlugCheck<TSlug, TSteps>
      & MapSourceCheck<TInput, TSteps, TSource>,
    handler:
      & StepHandler<ElementOf<MapSource<TInput, TSteps, TSource>>, TOutput>
      & OutputCheck<TOutput>,
  ): Flow<
    TInput,
    AddStep<
      TSteps,
      TSlug,
      & {
        input: ElementOf<MapSource<TInput, TSteps, TSource>>;
        handlerOutput: TOutput;
        output: TOutput[];
        dependencies: TSource;
      }
      & SkipFlags<TSteps, TSource, TIf, TIfNot, TUnmet, TExhausted>
    >
  > {
    return this.#with(buildStep(this.#slug, this.#steps, "map", config, handler));
  }

  /**
   * A copy of this flow with one more step; the receiver is left as it was. `R` is the
   * caller's declared return type: the run-time object is the same whatever the types say.
   */
  #with<R>(step: StepDefinition): R {
    const next = new Flow<TInput, TSteps>({ slug: this.#slug, ...this.#options });
    next.#steps = Object.freeze([...this.#steps, step]);
    next.#stepSlugs = Object.freeze(next.#steps.map((defined) => defined.slug));
    return next as R;
  }
}
