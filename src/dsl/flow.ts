/** The immutable, typed flow builder. */
import { buildStep, rejectUnknownKeys } from "./build_step.ts";
import { FlowDefinitionError } from "./errors.ts";
import type { Json } from "./json.ts";
import { type FlowOptions, resolveFlowOptions, type StepOptions } from "./options.ts";
import { describe, slugProblem } from "./slug.ts";
import type { StepDefinition, StepHandler } from "./step_definition.ts";
import type {
  AddStep,
  ElementOf,
  MapSource,
  MapSourceCheck,
  NoSteps,
  OutputCheck,
  SingleStepInput,
  SlugCheck,
  StepMap,
} from "./types.ts";

/** `new Flow({ slug, ...options })`. */
export interface FlowConfig extends FlowOptions {
  slug: string;
}

/** Options of `.step()` and `.array()`. */
export interface SingleStepConfig<TSlug extends string, TDeps extends string> extends StepOptions {
  slug: TSlug;
  /** Steps whose outputs this step needs; each must be defined before it. */
  dependsOn?: readonly TDeps[];
}

/** Options of `.map()`. */
export interface MapStepConfig<TSlug extends string, TSource extends string> extends StepOptions {
  slug: TSlug;
  /** The step whose array output is mapped; omit it to map over the flow input. */
  array?: TSource;
}

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
  step<TSlug extends string, TDeps extends keyof TSteps & string = never, TOutput = never>(
    config: SingleStepConfig<TSlug, TDeps> & SlugCheck<TSlug, TSteps>,
    handler:
      & StepHandler<SingleStepInput<TInput, TSteps, TDeps>, TOutput>
      & OutputCheck<TOutput>,
  ): Flow<
    TInput,
    AddStep<TSteps, TSlug, {
      input: SingleStepInput<TInput, TSteps, TDeps>;
      handlerOutput: TOutput;
      output: TOutput;
      dependencies: TDeps;
    }>
  > {
    return this.#with(buildStep(this.#slug, this.#steps, "step", config, handler));
  }

  /** Like `.step()`, but the handler must return an array (typically what a `.map()` consumes). */
  array<
    TSlug extends string,
    TDeps extends keyof TSteps & string = never,
    TOutput extends readonly unknown[] = never,
  >(
    config: SingleStepConfig<TSlug, TDeps> & SlugCheck<TSlug, TSteps>,
    handler:
      & StepHandler<SingleStepInput<TInput, TSteps, TDeps>, TOutput>
      & OutputCheck<TOutput>,
  ): Flow<
    TInput,
    AddStep<TSteps, TSlug, {
      input: SingleStepInput<TInput, TSteps, TDeps>;
      handlerOutput: TOutput;
      output: TOutput;
      dependencies: TDeps;
    }>
  > {
    return this.#with(buildStep(this.#slug, this.#steps, "array", config, handler));
  }

  /**
   * One task per element of an array: the flow input (no `array`) or the output of the step
   * named by `array`. Each task gets only its element; the step's output is the array of the
   * tasks' outputs, in order.
   */
  map<TSlug extends string, TSource extends keyof TSteps & string = never, TOutput = never>(
    config:
      & MapStepConfig<TSlug, TSource>
      & SlugCheck<TSlug, TSteps>
      & MapSourceCheck<TInput, TSteps, TSource>,
    handler:
      & StepHandler<ElementOf<MapSource<TInput, TSteps, TSource>>, TOutput>
      & OutputCheck<TOutput>,
  ): Flow<
    TInput,
    AddStep<TSteps, TSlug, {
      input: ElementOf<MapSource<TInput, TSteps, TSource>>;
      handlerOutput: TOutput;
      output: TOutput[];
      dependencies: TSource;
    }>
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
