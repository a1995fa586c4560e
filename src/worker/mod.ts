/**
 * The worker: `Deno.serve(createWorker(flow))` in an Edge Function, `await startWorker(flow)` as
 * a long-lived process (Deno, Node 20+).
 */
export { createWorker, functionNameFromUrl, type WorkerHandler } from "./create_worker.ts";
export { startWorker } from "./start_worker.ts";
export type { QueueContext } from "./context.ts";
export {
  FlowMismatchError,
  TaskTimeoutError,
  WorkerOptionError,
  WorkerShutdownError,
  WorkerStateError,
} from "./errors.ts";
export type { WorkerState } from "./lifecycle.ts";
export type { LogFields, LogLevel, LogRecord, LogSink } from "./logger.ts";
export {
  type BaseWorkerOptions,
  type CompilationOption,
  FLOW_WORKER_DEFAULTS,
  type FlowWorkerOptions,
  type ListenMode,
  QUEUE_WORKER_DEFAULTS,
  type QueueWorkerOptions,
  type RetryPolicy,
} from "./options.ts";
export { type QueueHandler, retryDelay } from "./queue_worker.ts";
export type { Worker, WorkerStatus } from "./worker.ts";
