/**
 * Options of `startEdgeRuntime`, their defaults and their validation.
 */
import type { LifecycleEvent } from "./events.ts";
import { DEFAULT_WALL_CLOCK_MS } from "./limits.ts";
import type { IsolatePermissions } from "./permissions.ts";

export interface EdgeRuntimeOptions {
  /** Directory holding `<name>/index.ts` functions (path relative to cwd, or file URL). */
  functionsDir: string | URL;
  /** TCP port on 127.0.0.1 (or `hostname`); 0, the default, picks a free one. */
  port?: number;
  hostname?: string;
  /**
   * Environment of every instance, e.g. SUPABASE_URL, SUPABASE_DB_URL,
   * SUPABASE_SERVICE_ROLE_KEY and secrets. The runtime adds SB_EXECUTION_ID per instance.
   * Nothing from the runtime's own environment is passed unless listed here.
   */
  env?: Record<string, string>;
  /** Wall-clock limit of an instance (default 150 000, Supabase's free plan). */
  wallClockMs?: number;
  /**
   * A running instance idle this long (no open request, no pending `waitUntil`) is dropped
   * with `beforeunload` reason early_drop (default 30 000; `Infinity` keeps it until it is
   * retired). A retired instance is dropped as soon as it is idle.
   */
  earlyDropMs?: number;
  /** After `beforeunload` (termination) on `stop()`, how long instances may finish (default 5 000). */
  terminationGraceMs?: number;
  /** How long a function's module may take to call `Deno.serve` (default 15 000). */
  bootTimeoutMs?: number;
  /**
   * Permissions of each isolate: "inherit" (default) or e.g. SUPABASE_LIKE_PERMISSIONS, which
   * needs `--unstable-worker-options` (see permissions.ts).
   */
  permissions?: IsolatePermissions;
  /** Called for every instance lifecycle event. */
  onEvent?: (event: LifecycleEvent) => void;
}

export interface ResolvedOptions {
  functionsDir: string | URL;
  port: number;
  hostname: string;
  env: Record<string, string>;
  wallClockMs: number;
  earlyDropMs: number;
  terminationGraceMs: number;
  bootTimeoutMs: number;
  permissions: IsolatePermissions;
  onEvent: (event: LifecycleEvent) => void;
}

function duration(name: string, value: number | undefined, fallback: number): number {
  const ms = value ?? fallback;
  if (typeof ms !== "number" || Number.isNaN(ms) || ms <= 0) {
    throw new RangeError(`startEdgeRuntime: ${name} must be a positive number of ms, got ${value}`);
  }
  return ms;
}

function finiteDuration(name: string, value: number | undefined, fallback: number): number {
  const ms = duration(name, value, fallback);
  if (!Number.isFinite(ms)) {
    throw new RangeError(`startEdgeRuntime: ${name} must be finite, got ${value}`);
  }
  return ms;
}

export function resolveOptions(options: EdgeRuntimeOptions): ResolvedOptions {
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`startEdgeRuntime: port must be an integer in 0..65535, got ${port}`);
  }
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (typeof value !== "string") {
      throw new TypeError(`startEdgeRuntime: env.${key} must be a string, got ${typeof value}`);
    }
  }
  return {
    functionsDir: options.functionsDir,
    port,
    hostname: options.hostname ?? "127.0.0.1",
    env: { ...options.env },
    wallClockMs: finiteDuration("wallClockMs", options.wallClockMs, DEFAULT_WALL_CLOCK_MS),
    earlyDropMs: duration("earlyDropMs", options.earlyDropMs, 30_000),
    terminationGraceMs: finiteDuration("terminationGraceMs", options.terminationGraceMs, 5_000),
    bootTimeoutMs: finiteDuration("bootTimeoutMs", options.bootTimeoutMs, 15_000),
    permissions: options.permissions ?? "inherit",
    onEvent: options.onEvent ?? (() => {}),
  };
}
