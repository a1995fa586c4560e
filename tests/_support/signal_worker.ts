/**
 * A worker in its own process, for the signal test: `deno run -A signal_worker.ts <db url>`.
 * Boots the worker, prints its id once it runs, and then waits for a signal.
 */
import { Flow } from "../../src/dsl/mod.ts";
import { createWorker } from "../../src/worker/create_worker.ts";

const flow = new Flow<{ ms: number }>({ slug: "signalled" })
  .step({ slug: "sleep" }, async ({ run }) => {
    await new Promise((resolve) => setTimeout(resolve, run.ms));
    return run.ms;
  });
const serve = createWorker(flow, {
  connectionString: Deno.args[0],
  logLevel: "warn",
  heartbeatIntervalMs: 100,
  pollIntervalMs: 50,
  maxPollSeconds: 1,
});
await serve(new Request("http://localhost/"));
await serve.worker.start();
console.log(serve.worker.workerId);
