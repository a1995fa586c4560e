/**
 * `createWorker(flow, options?)` / `createWorker(handler, { queueName, ... })`: a request handler
 * for `Deno.serve`. The first request boots the worker in the background (kept alive with
 * `EdgeRuntime.waitUntil` on Supabase) and answers at once with `{ workerId, state, flow }`;
 * later requests answer the current status. Options are validated here, before any request.
 */
import type { Json } from "../db/types.ts";
import { type AnyFlow, isFlow } from "../dsl/flow.ts";
import { flowWorkerKind } from "./flow_worker.ts";
import {
  type FlowWorkerOptions,
  type QueueWorkerOptions,
  resolveFlowWorkerOptions,
  resolveQueueWorkerOptions,
} from "./options.ts";
import { type QueueHandler, queueWorkerKind } from "./queue_worker.ts";
import { keepAlive } from "./shutdown.ts";
import { Worker } from "./worker.ts";

/** A `Deno.serve` handler that also carries its worker (`handler.worker.stop()`, ...). */
export interface WorkerHandler {
  (request: Request): Promise<Response>;
  readonly worker: Worker;
}

/** A worker that runs the steps of `flow`. */
export function createWorker(flow: AnyFlow, options?: FlowWorkerOptions): WorkerHandler;
/** A worker that runs `handler` for each message of the pgmq queue `options.queueName`. */
export function createWorker<TPayload = Json>(
  handler: QueueHandler<TPayload>,
  options: QueueWorkerOptions,
): WorkerHandler;
export function createWorker(
  target: AnyFlow | QueueHandler<never>,
  options?: FlowWorkerOptions | QueueWorkerOptions,
): WorkerHandler {
  let worker: Worker;
  if (isFlow(target)) {
    if (target.stepSlugs.length === 0) {
      throw new TypeError(`createWorker: flow "${target.slug}" has no steps`);
    }
    const config = resolveFlowWorkerOptions(options);
    worker = new Worker(flowWorkerKind(target, config), config);
  } else if (typeof target === "function") {
    const config = resolveQueueWorkerOptions(options);
    worker = new Worker(queueWorkerKind(target as QueueHandler<unknown>, config), config);
  } else {
    throw new TypeError(
      "createWorker: the first argument must be a Flow or a queue handler function",
    );
  }

  const handler = (request: Request): Promise<Response> => {
    if (worker.state === "created") {
      // Errors are logged and shown in the status; the worker is then stopped.
      worker.start(functionNameFromUrl(request.url)).catch(() => {});
      keepAlive(worker.done);
    }
    const status = worker.status();
    return Promise.resolve(Response.json(status, { status: status.error ? 500 : 200 }));
  };
  return Object.assign(handler, { worker }) as WorkerHandler;
}

/** `/functions/v1/<name>/...` or `/<name>/...` -> `<name>` (undefined for `/`). */
export function functionNameFromUrl(url: string): string | undefined {
  let path: string[];
  try {
    path = new URL(url).pathname.split("/").filter(Boolean);
  } catch {
    return undefined;
  }
  if (path[0] === "functions" && path[1] === "v1") return path[2];
  return path[0];
}
