/**
 * Lifecycle events of function instances: what `startEdgeRuntime({ onEvent })` receives, what
 * `runtime.events` keeps, and the one-line form `deno task serve` logs.
 */
import type { EnforcedUnloadReason } from "./limits.ts";

export type LifecycleEventType =
  /** A new instance (isolate) was created and its function module is loading. */
  | "boot"
  /** The function called `Deno.serve`: the instance takes requests. */
  | "ready"
  /** The module failed to load, or never called `Deno.serve` in time. */
  | "boot_failed"
  /** Half the wall-clock limit: no new requests; existing work continues. */
  | "retire"
  /** `beforeunload` was dispatched with `reason`. */
  | "beforeunload"
  /** An uncaught error (or `Deno.exit`) ended the instance. */
  | "crash"
  /** The isolate was terminated; `reason` says why. */
  | "terminate";

/** Why an instance ended. */
export type EndReason = EnforcedUnloadReason | "boot_failed" | "crash";

export interface LifecycleEvent {
  type: LifecycleEventType;
  /** Epoch milliseconds. */
  at: number;
  function: string;
  /** The instance id, which is also its `SB_EXECUTION_ID`. */
  instance: string;
  /** For `beforeunload` and `terminate`. */
  reason?: EndReason;
  /** Human-readable specifics (the boot error, how many requests were cut off, ...). */
  detail?: string;
}

/** `12:00:00.123 echo 1a2b3c4d terminate wall_clock: limit reached, 1 open request got 546` */
export function formatEvent(event: LifecycleEvent): string {
  const time = new Date(event.at).toISOString().slice(11, 23);
  const reason = event.reason ? ` ${event.reason}` : "";
  const detail = event.detail ? `: ${event.detail}` : "";
  return `${time} ${event.function} ${event.instance.slice(0, 8)} ${event.type}${reason}${detail}`;
}
