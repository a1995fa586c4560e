/**
 * Type-level bookkeeping of the builder: what each step takes and returns, and the checks
 * that turn definition mistakes into compile errors where TypeScript can see them.
 */
import type { WhenMode } from "./conditions.ts";
import type { IsJson } from "./json.ts";

/** What the type system records about one step. */
export interface StepTypes {
  /** The handler's input (a map task: one element). */
  input: unknown;
  /** What the handler returns (a map task: one element's result). */
  handlerOutput: unknown;
  /** What dependents and the run output see (a map step: the array of results). */
  output: unknown;
  /** Slugs of the steps it depends on, as a union (`never` for a root step). */
  dependencies: string;
  /** `true` when it may be skipped while its dependents run: it is an optional key of theirs. */
  skippedAlone: boolean;
  /** `true` when it may be skipped together with every step after it. */
  skippedWithDependents: boolean;
}

export type StepMap = Record<string, StepTypes>;

/** The steps of a flow before any were added. */
export type NoSteps = Record<never, never>;

/** Flattens intersections so editors show one object type. */
export type Simplify<T> = { [K in keyof T]: T[K] };

/**
 * A single step's input: the flow input under `run` plus exactly its dependencies' outputs;
 * a dependency that may be skipped alone is an optional key (absent when it was skipped).
 */
export type SingleStepInput<TInput, TSteps extends StepMap, TDeps extends string> = Simplify<
  & { run: TInput }
  & { [K in TDeps as true extends TSteps[K]["skippedAlone"] ? never : K]: TSteps[K]["output"] }
  & { [K in TDeps as true extends TSteps[K]["skippedAlone"] ? K : never]?: TSteps[K]["output"] }
>;

/** What a step's condition is tested against: the flow input for a root step, else its dependencies' outputs. */
export type ConditionInput<TInput, TSteps extends StepMap, TDeps extends string> = [TDeps] extends
  [never] ? TInput
  : { [K in TDeps]: TSteps[K]["output"] };

/** Whether a step with these condition options may be skipped, and how. */
export interface SkipFlags<
  TSteps extends StepMap,
  TDeps extends string,
  TIf,
  TIfNot,
  TUnmet extends WhenMode,
  TExhausted extends WhenMode,
> {
  skippedAlone: Or<
    And<HasCondition<TIf, TIfNot>, "skip" extends TUnmet ? true : false>,
    "skip" extends TExhausted ? true : false
  >;
  skippedWithDependents: Or<
    Or<
      And<HasCondition<TIf, TIfNot>, "skip-cascade" extends TUnmet ? true : false>,
      "skip-cascade" extends TExhausted ? true : false
    >,
    // A step after one skipped with its dependents is skipped too.
    true extends TSteps[TDeps]["skippedWithDependents"] ? true : false
  >;
}

type HasCondition<TIf, TIfNot> = [TIf, TIfNot] extends [undefined, undefined] ? false : true;
type And<A extends boolean, B extends boolean> = A extends true ? B : false;
type Or<A extends boolean, B extends boolean> = A extends true ? true : B;

/** The array a map step iterates: the flow input for a root map, else its source's output. */
export type MapSource<TInput, TSteps extends StepMap, TSource extends string> = [TSource] extends
  [never] ? TInput
  : TSteps[TSource]["output"];

export type ElementOf<T> = T extends readonly (infer E)[] ? E : never;

/**
 * The keys of `T` without index signatures. A step added under a non-literal slug (`string`)
 * makes `TSteps` indexable; later literal slugs are not duplicates of that.
 */
export type LiteralKeys<T> = keyof { [K in keyof T as string extends K ? never : K]: T[K] };

/**
 * `TSteps` with one more step. A step whose slug is not a literal (only known at run time)
 * adds an index signature with unknown types instead: steps after it may name any slug, and
 * the literal steps keep their types (intersecting with `unknown` changes nothing).
 */
export type AddStep<TSteps extends StepMap, TSlug extends string, TStep extends StepTypes> =
  Simplify<
    & TSteps
    & (string extends TSlug ? { [slug: string]: UnknownStep } : { [K in TSlug]: TStep })
  >;

interface UnknownStep {
  input: unknown;
  handlerOutput: unknown;
  output: unknown;
  dependencies: string;
  skippedAlone: false;
  skippedWithDependents: false;
}

type Letter =
  | "_"
  | "a"
  | "b"
  | "c"
  | "d"
  | "e"
  | "f"
  | "g"
  | "h"
  | "i"
  | "j"
  | "k"
  | "l"
  | "m"
  | "n"
  | "o"
  | "p"
  | "q"
  | "r"
  | "s"
  | "t"
  | "u"
  | "v"
  | "w"
  | "x"
  | "y"
  | "z"
  | "A"
  | "B"
  | "C"
  | "D"
  | "E"
  | "F"
  | "G"
  | "H"
  | "I"
  | "J"
  | "K"
  | "L"
  | "M"
  | "N"
  | "O"
  | "P"
  | "Q"
  | "R"
  | "S"
  | "T"
  | "U"
  | "V"
  | "W"
  | "X"
  | "Y"
  | "Z";
type Digit = "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9";

type RestIsSlugChars<S extends string> = S extends "" ? true
  : S extends `${Letter | Digit}${infer Rest}` ? RestIsSlugChars<Rest>
  : false;

/** `true` when the literal `S` matches `^[a-zA-Z_][a-zA-Z0-9_]*$` (length is checked at run time). */
export type IsSlugFormat<S extends string> = S extends `${Letter}${infer Rest}`
  ? RestIsSlugChars<Rest>
  : false;

/**
 * `unknown` (no constraint) for a good step slug; otherwise an object type with an
 * explanatory key the options object lacks, so the compiler error quotes the reason.
 * Non-literal slugs (`string`) pass; the builder checks them at run time.
 */
export type SlugCheck<TSlug extends string, TSteps extends StepMap> = string extends TSlug ? unknown
  : TSlug extends "run" ? { "error: step slug 'run' is reserved for the flow input": never }
  : TSlug extends LiteralKeys<TSteps> ? { "error: a step with this slug already exists": never }
  : IsSlugFormat<TSlug> extends true ? unknown
  : { "error: a slug must match ^[a-zA-Z_][a-zA-Z0-9_]*$": never };

/** `unknown` when the handler's output is JSON-compatible, else an unsatisfiable marker. */
export type OutputCheck<TOutput> = IsJson<TOutput> extends true ? unknown
  : {
    "error: a handler must return JSON (not a function, undefined, symbol, bigint or unknown)":
      never;
  };

/** `unknown` when a map step's source is an array type, else an unsatisfiable marker. */
export type MapSourceCheck<TInput, TSteps extends StepMap, TSource extends string> = [
  MapSource<TInput, TSteps, TSource>,
] extends [readonly unknown[]] ? unknown
  : [TSource] extends [never] ? { "error: a root map needs an array flow input": never }
  : { "error: the map's source step must return an array": never };
