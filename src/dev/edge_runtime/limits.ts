/**
 * The wall-clock timeline of a function instance, as on Supabase Edge Functions:
 *
 * - at half the wall-clock limit the instance is *retired*: new requests go to a fresh
 *   instance, the old one keeps serving what it has and running its `waitUntil` work;
 * - at ~90% of the limit a `beforeunload` event with `detail.reason = "wall_clock"` is
 *   dispatched on the instance's global scope (listeners are not awaited);
 * - at the limit the instance is killed; requests still open get HTTP 546.
 *
 * Only the wall clock is enforced. Supabase also limits CPU time (2 s per request) and memory
 * (256 MB), with `beforeunload` reasons `cpu` and `memory`; a Deno Worker exposes neither its
 * CPU time nor its heap to the parent, so this runtime does not enforce them and never
 * dispatches those reasons. Code that passes here can still hit them on Supabase.
 */

/** Supabase's free-plan wall-clock limit (paid plans: 400 s). */
export const DEFAULT_WALL_CLOCK_MS = 150_000;

/** Fraction of the wall-clock limit at which an instance is retired. */
export const RETIRE_FRACTION = 0.5;

/** Fraction of the wall-clock limit at which `beforeunload` (wall_clock) is dispatched. */
export const BEFOREUNLOAD_FRACTION = 0.9;

/** `event.detail.reason` values of Supabase's `beforeunload` event. */
export type UnloadReason = "cpu" | "memory" | "wall_clock" | "early_drop" | "termination";

/** The reasons this runtime can dispatch (CPU and memory limits are not enforced). */
export type EnforcedUnloadReason = Exclude<UnloadReason, "cpu" | "memory">;

export interface Timeline {
  /** Epoch ms at which the instance stops taking new requests. */
  retireAt: number;
  /** Epoch ms at which `beforeunload` (wall_clock) is dispatched. */
  beforeUnloadAt: number;
  /** Epoch ms at which the instance is terminated. */
  killAt: number;
}

export function wallClockTimeline(startedAt: number, wallClockMs: number): Timeline {
  return {
    retireAt: startedAt + Math.round(wallClockMs * RETIRE_FRACTION),
    beforeUnloadAt: startedAt + Math.round(wallClockMs * BEFOREUNLOAD_FRACTION),
    killAt: startedAt + wallClockMs,
  };
}
