/**
 * edgeflow's public API: the flow DSL, the compiler, and typed access to the
 * SQL core. (The worker's `createWorker` is added by src/worker.)
 */
export * from "./dsl/mod.ts";
export * from "./compile/mod.ts";
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
