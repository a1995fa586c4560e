/** The flows the benchmark runs through a worker. */
import { Flow } from "../src/dsl/mod.ts";

/** One step, no-op handler: measures the engine, not the work. */
export const oneStep = new Flow<number>({ slug: "bench_one" })
  .step({ slug: "noop" }, ({ run }) => run);

/** a -> b, a -> c, b + c -> d. */
export const diamond = new Flow<number>({ slug: "bench_diamond" })
  .step({ slug: "a" }, ({ run }) => run)
  .step({ slug: "b", dependsOn: ["a"] }, ({ a }) => a + 1)
  .step({ slug: "c", dependsOn: ["a"] }, ({ a }) => a + 2)
  .step({ slug: "d", dependsOn: ["b", "c"] }, ({ b, c }) => b + c);

/** One root map step over the flow input. */
export const wideMap = new Flow<number[]>({ slug: "bench_map" })
  .map({ slug: "each" }, (n) => n * 2);

/** Handlers that wait, to hold many tasks in flight at once (memory). */
export const slow = new Flow<number>({ slug: "bench_slow", timeout: 120 })
  .step({ slug: "wait" }, async ({ run }) => {
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    return { run, padding: "x".repeat(256) };
  });

export const BENCH_FLOWS = { oneStep, diamond, wideMap, slow };
export type BenchFlowName = keyof typeof BENCH_FLOWS;
