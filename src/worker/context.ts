/**
 * What handlers get as their second argument: `StepContext` (src/dsl/context.ts) for flow
 * steps, `QueueContext` for queue handlers. Shared parts are built once per worker; the
 * supabase-js client is created on first use, once. supabase-js itself is only loaded when
 * its credentials are set (it costs ~10 MB of memory).
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "../db/connect.ts";
import type { Json, QueueMessage, StepTaskRecord } from "../db/types.ts";
import type { RawMessage, StepContext } from "../dsl/context.ts";

/** The context of a queue worker's handler. */
export interface QueueContext<TPayload = Json> {
  /** The worker's environment variables. */
  env: Readonly<Record<string, string | undefined>>;
  /** The worker's connection pool (postgres.js). */
  sql: Sql;
  /** A supabase-js client when `SUPABASE_URL` and a service key are set. */
  supabase: SupabaseClient | undefined;
  /** Aborts at the visibility timeout, or when the worker gives up on the handler at shutdown. */
  signal: AbortSignal;
  /** Aborts as soon as the worker starts shutting down. */
  shutdownSignal: AbortSignal;
  /** Which attempt at this message this is, 1 for the first (its `read_ct`). */
  attempt: number;
  /** The message as `pgmq.read` returned it. */
  rawMessage: QueueMessage<TPayload>;
  workerConfig: Readonly<Record<string, unknown>>;
}

/** The per-worker part of every context. */
export interface SharedContext {
  env: Readonly<Record<string, string | undefined>>;
  sql: Sql;
  supabase(): SupabaseClient | undefined;
  shutdownSignal: AbortSignal;
  workerConfig: Readonly<Record<string, unknown>>;
  /**
   * Closes what handlers opened through the worker's supabase-js client: its realtime channels
   * and socket, whose heartbeat and reconnect timers would otherwise outlive the worker.
   */
  close(): Promise<void>;
}

export async function sharedContext(args: {
  env: Record<string, string | undefined>;
  sql: Sql;
  shutdownSignal: AbortSignal;
  workerConfig: Readonly<Record<string, unknown>>;
}): Promise<SharedContext> {
  const env = Object.freeze({ ...args.env });
  const credentials = supabaseCredentials(env);
  let create: (() => SupabaseClient) | undefined;
  if (credentials) {
    const { createClient } = await import("@supabase/supabase-js");
    create = () =>
      createClient(credentials.url, credentials.key, {
        auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      });
  }
  let client: SupabaseClient | undefined;
  return {
    env,
    sql: args.sql,
    shutdownSignal: args.shutdownSignal,
    workerConfig: args.workerConfig,
    supabase() {
      if (create && !client) client = create();
      return client;
    },
    async close() {
      // Only when a handler opened a channel: realtime-js's disconnect starts a 10 s timer it
      // never clears (phoenix/socketAdapter.js, disconnect(): the `timeout` fallback stays
      // scheduled after the socket closed), so it is not called when there is nothing to close.
      if (!client || client.getChannels().length === 0) return;
      await client.removeAllChannels().catch(() => {});
    },
  };
}

export function stepContext(
  shared: SharedContext,
  task: StepTaskRecord,
  message: QueueMessage<unknown>,
  attempt: number,
  signal: AbortSignal,
): StepContext {
  return handlerContext(shared, signal, {
    attempt,
    rawMessage: message as unknown as RawMessage,
    stepTask: task,
  });
}

export function queueContext<TPayload>(
  shared: SharedContext,
  message: QueueMessage<TPayload>,
  signal: AbortSignal,
): QueueContext<TPayload> {
  return handlerContext(shared, signal, { attempt: message.read_ct, rawMessage: message });
}

/** The parts every handler's context has, with the handler's own (`rawMessage`, ...) added. */
function handlerContext<TOwn extends object>(
  shared: SharedContext,
  signal: AbortSignal,
  own: TOwn,
) {
  return {
    env: shared.env,
    sql: shared.sql,
    get supabase() {
      return shared.supabase();
    },
    signal,
    shutdownSignal: shared.shutdownSignal,
    workerConfig: shared.workerConfig,
    ...own,
  };
}

/**
 * Where a service-role client connects: SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY, else the
 * first key of SUPABASE_SECRET_KEYS (a JSON object, array or string, or a comma-separated list
 * whose entries may be `name=key` or `name:key`). `undefined` when either is missing.
 */
export function supabaseCredentials(
  env: Readonly<Record<string, string | undefined>>,
): { url: string; key: string } | undefined {
  const url = env.SUPABASE_URL;
  const key = env.SUPABASE_SERVICE_ROLE_KEY || firstSecretKey(env.SUPABASE_SECRET_KEYS);
  return url && key ? { url, key } : undefined;
}

export function firstSecretKey(value: string | undefined): string | undefined {
  if (!value?.trim()) return undefined;
  try {
    const parsed: unknown = JSON.parse(value);
    const first = typeof parsed === "string"
      ? parsed
      : Array.isArray(parsed)
      ? parsed[0]
      : typeof parsed === "object" && parsed !== null
      ? Object.values(parsed)[0]
      : undefined;
    return typeof first === "string" && first ? first : undefined;
  } catch {
    const entry = value.split(",").map((part) => part.trim()).find(Boolean);
    if (!entry) return undefined;
    const named = /^[A-Za-z0-9_-]+[=:](.+)$/.exec(entry);
    return named ? named[1].trim() : entry;
  }
}
