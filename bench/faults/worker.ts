/** Starts and kills fault-suite workers (bench/faults/worker_process.ts), collecting their logs. */
import { freePort } from "../../src/dev/postgres_server.ts";
import type { LogLevel } from "../../src/worker/mod.ts";

/** One line of a worker's log (worker_process.ts writes them as JSON). */
export interface WorkerLogLine {
  /** ms since the epoch */
  t: number;
  level: LogLevel;
  msg: string;
  fields: Record<string, unknown>;
}

export interface FaultWorker {
  pid: number;
  log: WorkerLogLine[];
  /** SIGKILL: no shutdown, no report, no goodbye; resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after 15 s. */
  stop(): Promise<void>;
}

/**
 * Options every fault-suite worker runs with: 20 handlers in flight, and a short idle wait
 * (maxPollSeconds: "one poll" in the recovery bound).
 */
export const FAULT_WORKER_OPTIONS = {
  maxConcurrent: 20,
  batchSize: 10,
  maxPollSeconds: 1,
  pollIntervalMs: 100,
  heartbeatIntervalMs: 1_000,
  maxPgConnections: 4,
  shutdownGraceMs: 3_000,
  logLevel: "info",
} as const;

export async function startFaultWorker(
  dbUrl: string,
  options: Record<string, unknown> = {},
): Promise<FaultWorker> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./worker_process.ts", import.meta.url).pathname, String(port)],
    env: {
      EDGE_WORKER_DB_URL: dbUrl,
      FAULT_WORKER_OPTIONS: JSON.stringify({ ...FAULT_WORKER_OPTIONS, ...options }),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const log: WorkerLogLine[] = [];
  const reading = collectLines(child.stdout, log);
  // The first request boots the worker, as on Supabase.
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`, { method: "POST" });
      await response.body?.cancel();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`fault worker did not answer on port ${port}: ${error}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    return status;
  });
  const signal = (name: Deno.Signal) => {
    if (exited) return;
    try {
      child.kill(name);
    } catch {
      // exited meanwhile
    }
  };
  const gone = async () => {
    await status;
    await reading;
  };
  return {
    pid: child.pid,
    log,
    async kill() {
      signal("SIGKILL");
      await gone();
    },
    async stop() {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), 15_000);
      await gone();
      clearTimeout(timer);
    },
  };
}

async function collectLines(stream: ReadableStream<Uint8Array>, into: WorkerLogLine[]) {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      try {
        into.push(JSON.parse(line));
      } catch {
        into.push({ t: Date.now(), level: "info", msg: line, fields: {} });
      }
    }
  }
}
