/** JSON values, and the type-level check that a handler's output survives a JSON round trip. */

/** Any value `jsonb` stores unchanged. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * The parts of `T` that are not JSON (functions, `undefined`, symbols, bigints, `unknown`),
 * or `never` when `T` is JSON-compatible. Interfaces and class-free object types work
 * without index signatures. Optional properties are fine (an absent key is valid JSON),
 * `undefined` as a present value is not. Recursion stops after a few levels so that
 * self-referential types (trees) do not make the checker give up.
 */
export type NonJson<T, Depth extends unknown[] = []> = Depth["length"] extends 10 ? never
  : IsAny<T> extends true ? never
  : T extends string | number | boolean | null ? never
  : T extends undefined | symbol | bigint | ((...args: never[]) => unknown) ? T
  : T extends readonly (infer E)[] ? NonJson<E, [...Depth, unknown]>
  : T extends object
    ? { [K in keyof T]-?: NonJson<PresentValue<T, K>, [...Depth, unknown]> }[keyof T]
  : T;

/** `true` when `T` is JSON-compatible (see {@link NonJson}). */
export type IsJson<T> = [NonJson<T>] extends [never] ? true : false;

/** The value of `T[K]` when the key is present: an optional key may be absent, not undefined. */
type PresentValue<T, K extends keyof T> = object extends Pick<T, K> ? Exclude<T[K], undefined>
  : T[K];

type IsAny<T> = 0 extends 1 & T ? true : false;
