/**
 * Plays pg_net's part locally: calls pgflow.ensure_workers() on a timer and
 * invokes, through the local edge runtime, every function it names (tracked
 * functions with no live worker). On Supabase, pg_cron and pg_net do this.
 */
import type { Sql } from "../db/connect.ts";
import type { EdgeRuntime } from "./edge_runtime/mod.ts";

export interface KeepAlive {
  /** Runs one round now; resolves with the functions it invoked. */
  tick(): Promise<string[]>;
  stop(): Promise<void>;
}

export function startKeepAlive(options: {
  sql: Sql;
  runtime: EdgeRuntime;
  intervalMs?: number;
  /** A worker without a heartbeat for this long is not live (SQL interval text). */
  heartbeatTimeout?: string;
  onInvoke?: (functionName: string, status: number) => void;
}): KeepAlive {
  const { sql, runtime } = options;
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let wake = () => {};

  const tick = async (): Promise<string[]> => {
    const due = await sql<{ function_name: string }[]>`
      select function_name from pgflow.ensure_workers(${
      options.heartbeatTimeout ?? "15 seconds"
    }::interval)`;
    const names = due.map((row) => row.function_name);
    await Promise.all(names.map(async (name) => {
      const response = await runtime.invoke(name, { method: "POST", body: "{}" });
      await response.body?.cancel();
      options.onInvoke?.(name, response.status);
    }));
    return names;
  };

  const loop = async () => {
    while (!stopped) {
      running = tick().catch((error) => console.error(`keep-alive: ${error}`));
      await running;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.intervalMs ?? 1_000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  const looping = loop();

  return {
    tick,
    async stop() {
      stopped = true;
      wake();
      await running;
      await looping;
    },
  };
}
