/**
 * Stopping a local edge runtime in tests. Deno's sanitizers do not see Web Workers, so the
 * isolates get their own check: every instance that booted must have been terminated.
 */
import type { EdgeRuntime } from "../../src/dev/edge_runtime/mod.ts";

export async function stopRuntime(runtime: EdgeRuntime): Promise<void> {
  await runtime.stop();
  const alive = new Set<string>();
  for (const event of runtime.events) {
    if (event.type === "boot") alive.add(`${event.function} ${event.instance}`);
    if (event.type === "terminate") alive.delete(`${event.function} ${event.instance}`);
  }
  if (alive.size > 0) {
    throw new Error(`isolates still running after stop(): ${[...alive].join(", ")}`);
  }
}
