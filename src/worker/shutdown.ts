/**
 * The platform adapter: how the worker is kept alive and how it learns it must stop.
 *
 * - Supabase Edge Runtime: `EdgeRuntime.waitUntil(promise)` keeps the isolate alive for the
 *   worker's background loop; `beforeunload` (with `detail.reason` in cpu, memory, wall_clock,
 *   early_drop, termination) announces the end. Its listeners are not awaited.
 * - Plain Deno and Node (a long-lived process): SIGTERM and SIGINT. All workers of the process stop
 *   gracefully, then the process exits (128 + signal number); a second signal exits at once.
 *
 * One set of listeners serves every worker of the process; it is removed when the last stops.
 */
import { exitProcess, onGlobalEvent, onProcessSignal, type SignalName } from "./platform.ts";

type StopFn = (reason: string) => Promise<void>;

interface EdgeRuntimeGlobal {
  waitUntil(promise: Promise<unknown>): void;
}

const SIGNALS: Record<SignalName, number> = { SIGINT: 2, SIGTERM: 15 };

const workers = new Set<StopFn>();
let installed: (() => void) | undefined;
let exiting = false;

/** The Supabase Edge Runtime global, when running there. */
export function edgeRuntime(): EdgeRuntimeGlobal | undefined {
  const candidate = (globalThis as { EdgeRuntime?: { waitUntil?: unknown } }).EdgeRuntime;
  return typeof candidate?.waitUntil === "function" ? candidate as EdgeRuntimeGlobal : undefined;
}

/** Keeps the runtime alive until `promise` settles, where the runtime needs to be told. */
export function keepAlive(promise: Promise<unknown>): void {
  edgeRuntime()?.waitUntil(promise);
}

/** Calls `stop(reason)` when the platform asks the process to end; returns the unsubscribe. */
export function onPlatformShutdown(stop: StopFn): () => void {
  workers.add(stop);
  installed ??= install();
  return () => {
    workers.delete(stop);
    if (workers.size === 0 && installed) {
      installed();
      installed = undefined;
    }
  };
}

function stopAll(reason: string): Promise<unknown> {
  return Promise.allSettled([...workers].map((stop) => stop(reason)));
}

function install(): () => void {
  const removers: (() => void)[] = [];
  const unsubscribeUnload = onGlobalEvent("beforeunload", (event) => {
    const detail = (event as CustomEvent<{ reason?: unknown } | undefined>).detail;
    const reason = typeof detail?.reason === "string" ? detail.reason : "unload";
    stopAll(`beforeunload (${reason})`);
  });
  if (unsubscribeUnload) removers.push(unsubscribeUnload);
  // The edge runtime has no process signals (and may not define the API at all).
  if (!edgeRuntime()) {
    for (const name of Object.keys(SIGNALS) as SignalName[]) {
      const unsubscribe = onProcessSignal(name, () => onSignal(name));
      if (unsubscribe) removers.push(unsubscribe);
    }
  }
  return () => removers.forEach((remove) => remove());
}

async function onSignal(name: SignalName): Promise<void> {
  const code = 128 + SIGNALS[name];
  if (exiting) exitProcess(code);
  exiting = true;
  await stopAll(`signal ${name}`);
  exitProcess(code);
}
