/**
 * edgeflow's public API: the flow DSL, the compiler, the edge worker
 * (`Deno.serve(createWorker(flow))`), the client (`createClient(supabase | sql)`) and typed
 * access to the SQL core.
 */
export * from "./dsl/mod.ts";
export * from "./compile/mod.ts";
export * from "./worker/mod.ts";
export * from "./client/mod.ts";
export {
  addStep,
  completeTask,
  connect,
  createFlow,
  deleteFlowAndData,
  ensureFlowCompiled,
  type EnsureFlowCompiledResult,
  failTask,
  getRunWithStates,
  pruneDataOlderThan,
  requeueStalledTasks,
  type RunRow,
  type RunWithStates,
  type Sql,
  startFlow,
  startFlowWithStates,
  type StepStateRow,
  type StepTaskRecord,
  type StepTaskRow,
} from "./db/mod.ts";
