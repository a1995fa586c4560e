/**
 * The entry module of every function instance (a Deno module Worker). On the host's `boot`
 * message it sets up what Supabase's runtime gives a function — its own env with
 * `SB_EXECUTION_ID`, the `EdgeRuntime` global, a `Deno.serve` that captures the handler
 * instead of listening — then imports the function's module. It reports `ready` once the
 * handler is captured (or the module's default export has a `fetch` method), or `boot_error`.
 * Afterwards it answers `request` messages with the handler and turns `beforeunload`
 * messages into a `beforeunload` event on its global scope.
 */
import { workerError } from "./error_responses.ts";
import { installEdgeRuntimeGlobal } from "./isolate_edge_runtime.ts";
import { installInstanceEnv } from "./isolate_env.ts";
import { captureDenoServe, type CapturedServe, PLACEHOLDER_ADDR } from "./isolate_serve.ts";
import type { UnloadReason } from "./limits.ts";
import {
  deserializeRequest,
  type HostMessage,
  type IsolateMessage,
  type SerializedRequest,
  serializeResponse,
  transferables,
} from "./protocol.ts";

interface WorkerScope {
  postMessage(message: IsolateMessage, transfer?: Transferable[]): void;
  addEventListener(type: "message", listener: (event: MessageEvent<HostMessage>) => void): void;
}

const scope = globalThis as unknown as WorkerScope;

let functionName = "(booting)";
let captured: CapturedServe | undefined;
let ready = false;
let failed = false;

function send(message: IsolateMessage, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

// deno-lint-ignore no-control-regex
const ANSI_COLOR = /\x1b\[[0-9;]*m/g;

/** `Name: message`, without the terminal colours Deno puts in module-loading errors. */
function describe(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.replace(ANSI_COLOR, "");
}

function markReady(): void {
  if (ready || failed) return;
  ready = true;
  send({ type: "ready" });
}

function failBoot(cause: string): void {
  if (ready || failed) return;
  failed = true;
  send({ type: "boot_error", message: cause });
}

async function boot(message: Extract<HostMessage, { type: "boot" }>): Promise<void> {
  functionName = message.functionName;
  installInstanceEnv({ ...message.env, SB_EXECUTION_ID: message.executionId });
  installEdgeRuntimeGlobal((delta) => send({ type: "wait_until", delta }));
  captureDenoServe(functionName, (serve) => {
    captured = serve;
    // Ready after the current macrotask, so a module that throws right after Deno.serve
    // still counts as failing to boot.
    setTimeout(markReady, 0);
  });
  reportExit();

  let module: { default?: { fetch?: unknown } };
  try {
    module = await import(message.entryUrl);
  } catch (error) {
    if (ready) throw error; // Failed after it started serving: an uncaught error, as anywhere.
    console.error(`function "${functionName}" failed to load:`, error);
    failBoot(describe(error));
    return;
  }
  const fallback = module.default;
  if (!captured && typeof fallback?.fetch === "function") {
    const fetch = fallback.fetch as CapturedServe["handler"];
    captured = { handler: (request, info) => fetch.call(fallback, request, info) };
  }
  if (!captured) {
    failBoot(
      "the module loaded but never called Deno.serve(handler) (nor exported default { fetch })",
    );
    return;
  }
  markReady();
}

/** `Deno.exit` inside a Worker ends only the Worker; tell the host why it went away. */
function reportExit(): void {
  const exit = Deno.exit;
  Object.defineProperty(Deno, "exit", {
    value: (code?: number): never => {
      send({ type: "exit", code: code ?? 0 });
      return exit(code);
    },
    enumerable: true,
    configurable: true,
    writable: true,
  });
}

async function respond(request: SerializedRequest): Promise<void> {
  let completed = () => {};
  const info = {
    remoteAddr: PLACEHOLDER_ADDR,
    completed: new Promise<void>((resolve) => completed = resolve),
  };
  let response: Response;
  try {
    const result: unknown = await captured!.handler(deserializeRequest(request), info);
    if (!(result instanceof Response)) {
      throw new TypeError(`the handler returned ${typeof result} instead of a Response`);
    }
    response = result;
  } catch (error) {
    response = await errorResponse(error);
  }
  let serialized;
  try {
    serialized = await serializeResponse(request.id, response);
  } catch (error) {
    console.error(`function "${functionName}": reading the response body failed:`, error);
    serialized = await serializeResponse(
      request.id,
      workerError(functionName, `reading the response body failed: ${describe(error)}`),
    );
  }
  send({ type: "response", response: serialized }, transferables(serialized.body));
  completed();
}

async function errorResponse(error: unknown): Promise<Response> {
  console.error(`function "${functionName}": the handler threw:`, error);
  if (captured?.onError) {
    try {
      const answer: unknown = await captured.onError(error);
      if (answer instanceof Response) return answer;
    } catch (onErrorError) {
      console.error(`function "${functionName}": onError threw:`, onErrorError);
    }
  }
  return workerError(functionName, describe(error));
}

function dispatchBeforeUnload(reason: UnloadReason): void {
  try {
    globalThis.dispatchEvent(new CustomEvent("beforeunload", { detail: { reason } }));
  } finally {
    send({ type: "beforeunload_dispatched" });
  }
}

scope.addEventListener("message", (event) => {
  const message = event.data;
  switch (message.type) {
    case "boot":
      void boot(message);
      break;
    case "request":
      void respond(message.request);
      break;
    case "beforeunload":
      dispatchBeforeUnload(message.reason);
      break;
  }
});
