/**
 * One fault-suite worker as its own OS process, so that it can be killed with SIGKILL:
 * `deno run -A bench/faults/worker_process.ts <port>` serves createWorker(faultFlow) like an
 * edge function; the first request boots it. Options come as JSON in FAULT_WORKER_OPTIONS.
 * Log lines go to stdout as JSON (time, level, message) for the suite to count, without the
 * per-task lines.
 */
import { createWorker, type LogRecord } from "../../src/worker/mod.ts";
import { faultFlow } from "./flow.ts";

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port <= 0) {
  throw new Error(`usage: worker_process.ts <port>; got ${JSON.stringify(Deno.args[0])}`);
}
const options = JSON.parse(Deno.env.get("FAULT_WORKER_OPTIONS") ?? "{}");
const QUIET = new Set(["task completed", "task started"]);

function logSink(record: LogRecord): void {
  if (QUIET.has(record.msg)) return;
  const { worker: _worker, flow: _flow, ...fields } = record.fields;
  console.log(
    JSON.stringify({ t: record.time.getTime(), level: record.level, msg: record.msg, fields }),
  );
}

Deno.serve(
  { port, hostname: "127.0.0.1", onListen: () => {} },
  createWorker(faultFlow, { ...options, logSink }),
);
