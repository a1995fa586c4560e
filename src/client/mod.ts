/**
 * The edgeflow client: `createClient(supabase | sql)`, `client.startFlow(MyFlow, input)`, a run
 * handle with `status`, `output`, step states, `waitFor(...)` and `on("run:*" | "step:<slug>:*")`.
 * It imports neither postgres.js nor supabase-js: it uses the client or pool it is given.
 */
export {
  type ClientOptions,
  createClient,
  EdgeflowClient,
  type StartFlowOptions,
} from "./client.ts";
export { RunDisposedError, RunEndedError, RunWaitTimeoutError } from "./errors.ts";
export { type PostgresLike, postgresTransport } from "./postgres_transport.ts";
export { FlowRun, type RunEventListener, type WaitOptions } from "./run.ts";
export { type SupabaseLike, supabaseTransport } from "./supabase_transport.ts";
export type {
  ClientTransport,
  InputOf,
  OutputOf,
  RunEvent,
  RunEventName,
  RunEventPattern,
  StepSlugOf,
  StepState,
} from "./types.ts";
