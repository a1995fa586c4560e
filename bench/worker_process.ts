/**
 * One worker process for the benchmark: `deno run -A bench/worker_process.ts
 * <flow name> <port>` serves createWorker(flow) like an edge function would;
 * the benchmark boots it with one request and stops it with SIGTERM.
 */
import { createWorker } from "../src/worker/mod.ts";
import { BENCH_FLOWS, type BenchFlowName } from "./flows.ts";

const [name, port] = Deno.args;
const flow = BENCH_FLOWS[name as BenchFlowName];
if (!flow) {
  throw new Error(`unknown bench flow ${name}; one of ${Object.keys(BENCH_FLOWS).join(", ")}`);
}
const options = JSON.parse(Deno.env.get("BENCH_WORKER_OPTIONS") ?? "{}");
Deno.serve(
  { port: Number(port), hostname: "127.0.0.1", onListen: () => {} },
  createWorker(flow, options),
);
