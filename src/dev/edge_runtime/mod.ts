/**
 * The local edge runtime: Supabase Edge Functions semantics without Docker, for `deno task
 * serve`, the demo and tests. See runtime.ts for the server, instance.ts for an instance's
 * life, limits.ts for what is (and is not) enforced.
 */
export { type EdgeRuntime, startEdgeRuntime } from "./runtime.ts";
export type { EdgeRuntimeOptions } from "./options.ts";
export type { InstanceInfo, InstanceState } from "./instance.ts";
export {
  type EndReason,
  formatEvent,
  type LifecycleEvent,
  type LifecycleEventType,
} from "./events.ts";
export {
  BEFOREUNLOAD_FRACTION,
  DEFAULT_WALL_CLOCK_MS,
  RETIRE_FRACTION,
  type UnloadReason,
} from "./limits.ts";
export { RESOURCE_LIMIT_STATUS } from "./error_responses.ts";
export { type IsolatePermissions, SUPABASE_LIKE_PERMISSIONS } from "./permissions.ts";
export { readEnvFile } from "./env_file.ts";
