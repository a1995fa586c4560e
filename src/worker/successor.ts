/**
 * A retiring worker asks for its successor: when the platform is about to end
 * this instance (wall-clock or resource limit, early drop), the worker invokes
 * its own function once, so a fresh instance boots and takes over without
 * waiting for the keep-alive job. Needs SUPABASE_URL and a service key; a
 * failed request only costs the wait for pgflow.ensure_workers().
 */
import { supabaseCredentials } from "./context.ts";
import type { Logger } from "./logger.ts";

/** Platform reasons after which nobody else will start a worker soon. */
const HANDOVER_REASONS = ["wall_clock", "cpu", "memory", "early_drop"];

/** `beforeunload (wall_clock)` -> should this stop ask for a successor? */
export function wantsSuccessor(stopReason: string): boolean {
  const match = /^beforeunload \((\w+)\)$/.exec(stopReason);
  return match !== null && HANDOVER_REASONS.includes(match[1]);
}

/** Never rejects: a failure is logged. */
export async function requestSuccessor(args: {
  env: Readonly<Record<string, string | undefined>>;
  functionName: string;
  log: Logger;
  timeoutMs?: number;
}): Promise<void> {
  const credentials = supabaseCredentials(args.env);
  if (!credentials) {
    args.log.debug("no SUPABASE_URL and service key; leaving the successor to ensure_workers");
    return;
  }
  const url = `${credentials.url.replace(/\/+$/, "")}/functions/v1/${args.functionName}`;
  // Not AbortSignal.timeout: its timer would outlive the request by up to timeoutMs.
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), args.timeoutMs ?? 5_000);
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${credentials.key}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify({ reason: "successor" }),
      signal: timeout.signal,
    });
    await response.body?.cancel();
    args.log.info("asked for a successor", { status: response.status });
  } catch (error) {
    args.log.warn("could not ask for a successor; ensure_workers will start one", {
      error: error instanceof Error ? error.message : String(error),
    });
  } finally {
    clearTimeout(timer);
  }
}
