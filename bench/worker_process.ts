/**
 * One worker process for the benchmark: `deno run -A bench/worker_process.ts
 * <flow name> <port>` serves createWorker(flow) like an edge function would;
 * the benchmark boots it with one request and stops it with SIGTERM.
 * `GET /_bench/memory` answers the peak RSS seen by sampling Deno.memoryUsage().
 */
import { createWorker } from "../src/worker/mod.ts";
import { BENCH_FLOWS, type BenchFlowName } from "./flows.ts";

const [name, port] = Deno.args;
const flow = BENCH_FLOWS[name as BenchFlowName];
if (!flow) {
  throw new Error(`unknown bench flow ${name}; one of ${Object.keys(BENCH_FLOWS).join(", ")}`);
}
const options = JSON.parse(Deno.env.get("BENCH_WORKER_OPTIONS") ?? "{}");
const worker = createWorker(flow, options);

let peakRss = 0;
const sample = () => (peakRss = Math.max(peakRss, Deno.memoryUsage().rss));
sample();
setInterval(sample, 20);

Deno.serve(
  { port: Number(port), hostname: "127.0.0.1", onListen: () => {} },
  (request) => {
    if (new URL(request.url).pathname === "/_bench/memory") {
      sample();
      return Response.json({
        peakRssMb: peakRss / 2 ** 20,
        rssMb: Deno.memoryUsage().rss / 2 ** 20,
      });
    }
    return worker(request);
  },
);
