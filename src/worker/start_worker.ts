/**
 * `startWorker(flow, options?)`: the worker as a long-lived process, outside Edge Functions
 * (Deno, Node 20+). No HTTP request boots it: it starts at once, takes its connection from the
 * options or `EDGE_WORKER_DB_URL` / `SUPABASE_DB_URL` / `DATABASE_URL`, and stops gracefully on
 * SIGTERM or SIGINT, after which the process exits (128 + the signal's number).
 */
import type { Json } from "../db/types.ts";
import type { AnyFlow } from "../dsl/flow.ts";
import { createWorker } from "./create_worker.ts";
import type { FlowWorkerOptions, QueueWorkerOptions } from "./options.ts";
import type { QueueHandler } from "./queue_worker.ts";
import type { Worker } from "./worker.ts";

/** Starts a flow worker; resolves once it runs (rejects when it cannot start). */
export function startWorker(flow: AnyFlow, options?: FlowWorkerOptions): Promise<Worker>;
/** Starts a queue worker on `options.queueName`. */
export function startWorker<TPayload = Json>(
  handler: QueueHandler<TPayload>,
  options: QueueWorkerOptions,
): Promise<Worker>;
export async function startWorker(
  target: AnyFlow | QueueHandler<never>,
  options?: FlowWorkerOptions | QueueWorkerOptions,
): Promise<Worker> {
  const { worker } = createWorker(
    target as AnyFlow,
    options as FlowWorkerOptions | undefined,
  );
  await worker.start();
  return worker;
}
