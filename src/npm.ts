/**
 * The npm package's main entry (Node 20+; also Bun and Deno): the flow DSL, the worker
 * (`startWorker` for a long-lived process), the client and `compileFlow`. Built by
 * `deno task build:npm` into dist/npm; the browser entry is `edgeflow/client`
 * (src/client/mod.ts), which loads neither postgres.js nor supabase-js.
 */
export * from "./dsl/mod.ts";
export * from "./worker/mod.ts";
export * from "./client/mod.ts";
export { compileFlow } from "./compile/compile_flow.ts";
export { flowShape } from "./dsl/flow_shape.ts";
