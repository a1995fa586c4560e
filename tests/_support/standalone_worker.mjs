// A long-lived worker and a client, outside Edge Functions, with DATABASE_URL set:
//   node standalone_worker.mjs <built package>/index.js      (the npm package)
//   deno run -A standalone_worker.mjs <repo>/src/npm.ts       (the same source under Deno)
// Prints one JSON line per milestone; stops on SIGTERM or SIGINT.
import postgres from "postgres";

const { createClient, Flow, startWorker } = await import(process.argv[2]);

const Arithmetic = new Flow({ slug: "node_arithmetic" })
  .step({ slug: "double" }, ({ run }) => run.n * 2)
  .step({ slug: "plus_one", dependsOn: ["double"] }, ({ double }) => double + 1);

const worker = await startWorker(Arithmetic, {
  heartbeatIntervalMs: 100,
  pollIntervalMs: 50,
  maxPollSeconds: 1,
  logLevel: "info",
});
console.log(JSON.stringify({
  running: worker.workerId,
  denoGlobal: typeof globalThis.Deno,
  node: process.versions.node,
}));

// The client under Node too (postgres.js transport): three runs, each followed to the end.
const sql = postgres(process.env.DATABASE_URL, { max: 2 });
const client = createClient(sql);
const runs = await Promise.all([1, 2, 3].map((n) => client.startFlow(Arithmetic, { n })));
await Promise.all(runs.map((run) => run.waitFor("completed", { timeoutMs: 20_000 })));
console.log(JSON.stringify({ outputs: runs.map((run) => run.output) }));
await client.close();
await sql.end();
// The worker keeps the process alive until SIGTERM/SIGINT.
