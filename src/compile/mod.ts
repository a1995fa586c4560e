/** Flow -> SQL: the statements, the canonical shape, and migration files. */
export { compileFlow } from "./compile_flow.ts";
export { type FlowShape, flowShape, type StepShape } from "../dsl/flow_shape.ts";
export { loadFlow } from "./load_flow.ts";
export {
  type FlowMigrationResult,
  writeFlowMigration,
  type WriteFlowMigrationOptions,
} from "./write_migration.ts";
