/**
 * The runtime's own answers (as opposed to the function's), with the statuses and codes that
 * Supabase documents for Edge Functions: 404 unknown function, 405 unsupported method,
 * 500 WORKER_ERROR (uncaught error in the function), 503 BOOT_ERROR (the function failed to
 * start), 546 WORKER_LIMIT (stopped by a resource limit). Bodies are JSON
 * `{ code, message, function?, ... }`; the message names the function and the cause.
 */
import type { UnloadReason } from "./limits.ts";

/** Supabase's custom status for "stopped by a resource limit". */
export const RESOURCE_LIMIT_STATUS = 546;

/** The HTTP methods Supabase Edge Functions accept. */
export const ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

function json(status: number, body: Record<string, unknown>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

export function notFound(path: string, functionName?: string): Response {
  const message = functionName === undefined
    ? `no function at ${path}: functions are served at /functions/v1/<name>`
    : `function "${functionName}" not found (no ${functionName}/index.ts in the functions directory)`;
  return json(404, { code: "NOT_FOUND", message, function: functionName });
}

export function methodNotAllowed(method: string, functionName: string): Response {
  return json(405, {
    code: "METHOD_NOT_ALLOWED",
    message: `method ${method} is not supported by edge functions (use ${
      ALLOWED_METHODS.join(", ")
    }); function "${functionName}"`,
    function: functionName,
  });
}

export function bootError(functionName: string, cause: string): Response {
  return json(503, {
    code: "BOOT_ERROR",
    message: `function "${functionName}" failed to start: ${cause}`,
    function: functionName,
  });
}

export function workerError(functionName: string, cause: string): Response {
  return json(500, {
    code: "WORKER_ERROR",
    message: `function "${functionName}" failed: ${cause}`,
    function: functionName,
  });
}

export function resourceLimit(
  functionName: string,
  instanceId: string,
  reason: UnloadReason,
  detail: string,
): Response {
  return json(RESOURCE_LIMIT_STATUS, {
    code: "WORKER_LIMIT",
    reason,
    message: `function "${functionName}" (instance ${instanceId}) was stopped: ${detail}`,
    function: functionName,
    instance: instanceId,
  });
}

export function shuttingDown(functionName: string, instanceId?: string): Response {
  return json(503, {
    code: "RUNTIME_SHUTDOWN",
    message: `the edge runtime is shutting down; function "${functionName}"` +
      (instanceId ? ` (instance ${instanceId}) was terminated` : " was not called"),
    function: functionName,
    instance: instanceId,
  });
}
