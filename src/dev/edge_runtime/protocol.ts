/**
 * The messages between the runtime (host) and a function instance (a Deno Worker), and how a
 * Request or Response crosses that boundary: method/url/headers and the whole body as an
 * ArrayBuffer (transferred, not copied). Bodies are buffered: streaming responses (SSE) are
 * delivered when they end.
 */
import type { UnloadReason } from "./limits.ts";

export interface SerializedRequest {
  id: number;
  method: string;
  url: string;
  headers: [string, string][];
  body: ArrayBuffer | null;
}

export interface SerializedResponse {
  id: number;
  status: number;
  statusText: string;
  headers: [string, string][];
  body: ArrayBuffer | null;
}

/** What the host tells an instance. `boot` is always the first message. */
export type HostMessage =
  | {
    type: "boot";
    functionName: string;
    entryUrl: string;
    executionId: string;
    env: Record<string, string>;
  }
  | { type: "request"; request: SerializedRequest }
  | { type: "beforeunload"; reason: UnloadReason };

/** What an instance tells the host. */
export type IsolateMessage =
  /** The function called `Deno.serve` (or exported `{ fetch }`): requests may flow. */
  | { type: "ready" }
  /** The function's module failed to load or never produced a handler. */
  | { type: "boot_error"; message: string }
  | { type: "response"; response: SerializedResponse }
  /** `EdgeRuntime.waitUntil` work started (+1) or settled (-1). */
  | { type: "wait_until"; delta: 1 | -1 }
  /** The `beforeunload` event was dispatched (its listeners ran; they are not awaited). */
  | { type: "beforeunload_dispatched" }
  /** The function called `Deno.exit`. */
  | { type: "exit"; code: number };

/** Statuses whose responses must not carry a body. */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

export async function serializeRequest(
  id: number,
  request: Request,
  url: string,
): Promise<SerializedRequest> {
  const body = request.body === null ? null : await request.arrayBuffer();
  return { id, method: request.method, url, headers: [...request.headers], body };
}

export function deserializeRequest(message: SerializedRequest): Request {
  const bodyAllowed = message.method !== "GET" && message.method !== "HEAD";
  return new Request(message.url, {
    method: message.method,
    headers: message.headers,
    body: bodyAllowed ? message.body : null,
  });
}

export async function serializeResponse(
  id: number,
  response: Response,
): Promise<SerializedResponse> {
  const body = response.body === null || NULL_BODY_STATUSES.has(response.status)
    ? null
    : await response.arrayBuffer();
  return {
    id,
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers],
    body,
  };
}

export function deserializeResponse(message: SerializedResponse): Response {
  const headers = new Headers();
  for (const [name, value] of message.headers) headers.append(name, value);
  return new Response(NULL_BODY_STATUSES.has(message.status) ? null : message.body, {
    status: message.status,
    statusText: message.statusText,
    headers,
  });
}

/** The buffers to transfer with a message (so bodies are moved, not copied). */
export function transferables(body: ArrayBuffer | null): Transferable[] {
  return body === null ? [] : [body];
}
