/**
 * The options of `createWorker`, their defaults, and their validation. Every problem is
 * reported as a WorkerOptionError that names the option, before anything touches the database.
 */
import { MAX_FLOW_SLUG_LENGTH, SLUG_PATTERN } from "../limits.ts";
import type { Sql } from "../db/connect.ts";
import { WorkerOptionError } from "./errors.ts";
import { LOG_LEVELS, type LogLevel, type LogSink } from "./logger.ts";
import { platformEnv, platformEnvVar } from "./platform.ts";

/**
 * `true`: LISTEN for wake-ups; `false`: poll only; `"auto"`: LISTEN when a test notification
 * arrives at startup (it does not through a transaction pooler).
 */
export type ListenMode = boolean | "auto";

/** Options shared by flow workers and queue workers. */
export interface BaseWorkerOptions {
  /** A postgres.js pool to use (kept open on shutdown; use `prepare: false` behind a pooler). */
  sql?: Sql;
  /** Connection string; default: env EDGE_WORKER_DB_URL, SUPABASE_DB_URL, DATABASE_URL. */
  connectionString?: string;
  /** Most handlers running at once. */
  maxConcurrent?: number;
  /** Most messages read per poll. */
  batchSize?: number;
  /**
   * Longest idle wait, in seconds: one `pgmq.read_with_poll` call without LISTEN; with LISTEN,
   * the longest sleep before looking again for messages nobody announced.
   */
  maxPollSeconds?: number;
  /** How often `read_with_poll` looks at the queue while it waits (without LISTEN), in ms. */
  pollIntervalMs?: number;
  /** Seconds a read message stays hidden (flow: until start_tasks; queue: while handled). */
  visibilityTimeout?: number;
  /** How often the worker reports that it is alive (and learns it was deprecated), in ms. */
  heartbeatIntervalMs?: number;
  /**
   * Size of the worker's own pool, at least 2. LISTEN, or without it the long polls, use one
   * more connection of their own.
   */
  maxPgConnections?: number;
  /** Time in-flight handlers get to finish on shutdown, in ms. */
  shutdownGraceMs?: number;
  /** LISTEN for the SQL core's wake-up notifications. */
  listen?: ListenMode;
  /** Name recorded in `pgflow.workers`; default: the request path's function name, else the slug. */
  functionName?: string;
  /**
   * Environment for the handlers' `context.env` and connection lookup; default the process's
   * (Deno.env, or process.env under Node).
   */
  env?: Record<string, string | undefined>;
  logLevel?: LogLevel;
  /** Receives every log line instead of the console. */
  logSink?: LogSink;
}

/**
 * pgflow's spelling of the startup compilation (0.11): `false` skips it (flows compiled by
 * migrations); `{ allowDataLoss: true }` recreates a flow whose definition differs. Same meaning
 * as `compileOnStartup` and `recreateOnMismatch`.
 */
export type CompilationOption = false | { allowDataLoss?: boolean };

export interface FlowWorkerOptions extends BaseWorkerOptions {
  /**
   * At startup, compile the flow when it is missing and verify it when present (default true).
   * `false`: only check that the flow exists (it is compiled by migrations). pgflow's spelling:
   * `compilation: false`.
   */
  compileOnStartup?: boolean;
  /**
   * On a definition mismatch, delete the flow with all its runs and recreate it. pgflow's
   * spelling: `compilation: { allowDataLoss: true }`.
   */
  recreateOnMismatch?: boolean;
  /** pgflow's spelling of `compileOnStartup` / `recreateOnMismatch` (see CompilationOption). */
  compilation?: CompilationOption;
  /** How often to fail tasks whose worker vanished (`requeue_stalled_tasks`), in ms; 0 = never. */
  recoveryIntervalMs?: number;
}

/** How a queue worker retries a message whose handler failed. */
export type RetryPolicy =
  | {
    strategy: "fixed";
    /** Retries after the first attempt. */
    limit: number;
    /** Seconds before each retry. */
    baseDelay: number;
  }
  | {
    strategy: "exponential";
    limit: number;
    /** Seconds before the first retry; doubles each time. */
    baseDelay: number;
    /** Cap on the delay, in seconds. */
    maxDelay?: number;
  };

export interface QueueWorkerOptions extends BaseWorkerOptions {
  /** The pgmq queue to consume (created when missing). */
  queueName: string;
  retry?: RetryPolicy;
}

export type ResolvedRetryPolicy = Required<Extract<RetryPolicy, { strategy: "exponential" }>> | {
  strategy: "fixed";
  limit: number;
  baseDelay: number;
};

/** Options with defaults filled in and checked. */
export interface WorkerConfig {
  kind: "flow" | "queue";
  maxConcurrent: number;
  batchSize: number;
  maxPollSeconds: number;
  pollIntervalMs: number;
  visibilityTimeout: number;
  heartbeatIntervalMs: number;
  maxPgConnections: number;
  shutdownGraceMs: number;
  listen: ListenMode;
  logLevel: LogLevel;
  /** Flow workers only: compile/verify the flow at startup (else only check it exists). */
  compileOnStartup: boolean;
  /** Flow workers only. */
  recreateOnMismatch: boolean;
  /** Flow workers only; 0 = off. */
  recoveryIntervalMs: number;
  /** Queue workers only. */
  queueName?: string;
  /** Queue workers only. */
  retry?: ResolvedRetryPolicy;
  functionName?: string;
  sql?: Sql;
  connectionString?: string;
  env: Record<string, string | undefined>;
  logSink?: LogSink;
}

const COMMON_DEFAULTS = {
  maxConcurrent: 10,
  batchSize: 10,
  maxPollSeconds: 2,
  heartbeatIntervalMs: 5_000,
  maxPgConnections: 4,
  shutdownGraceMs: 10_000,
  listen: "auto" as ListenMode,
  logLevel: "info" as LogLevel,
};

/** Defaults of a flow worker (README, "Worker options"). */
export const FLOW_WORKER_DEFAULTS = Object.freeze({
  ...COMMON_DEFAULTS,
  // pgflow's is 100. Without LISTEN a new run waits half of it on average. Each look of the long
  // poll (read_and_start_tasks_with_poll) is one probe of the queue's vt index, a claim only when
  // it finds a message, so 40 a second cost an idle worker less than 20 claims did.
  pollIntervalMs: 25,
  visibilityTimeout: 5,
  compileOnStartup: true,
  recreateOnMismatch: false,
  recoveryIntervalMs: 30_000,
});

/** Defaults of a queue worker. */
export const QUEUE_WORKER_DEFAULTS = Object.freeze({
  ...COMMON_DEFAULTS,
  // pgmq.read_with_poll reads (parsed and planned anew) on every look.
  pollIntervalMs: 50,
  visibilityTimeout: 60,
  retry: Object.freeze(
    { strategy: "exponential", limit: 5, baseDelay: 3, maxDelay: 300 } as const,
  ),
});

const COMMON_KEYS = [
  "sql",
  "connectionString",
  "maxConcurrent",
  "batchSize",
  "maxPollSeconds",
  "pollIntervalMs",
  "visibilityTimeout",
  "heartbeatIntervalMs",
  "maxPgConnections",
  "shutdownGraceMs",
  "listen",
  "functionName",
  "env",
  "logLevel",
  "logSink",
];
const FLOW_KEYS = [
  ...COMMON_KEYS,
  "compileOnStartup",
  "recreateOnMismatch",
  "compilation",
  "recoveryIntervalMs",
];
const QUEUE_KEYS = [...COMMON_KEYS, "queueName", "retry"];

const MAX_INT = 2_147_483_647;

export function resolveFlowWorkerOptions(options: unknown): WorkerConfig {
  const given = checkObject(options);
  rejectUnknown(given, FLOW_KEYS, QUEUE_KEYS, "flow");
  const d = FLOW_WORKER_DEFAULTS;
  return {
    ...resolveCommon(given, d),
    kind: "flow",
    ...resolveCompilation(given),
    recoveryIntervalMs: int(given, "recoveryIntervalMs", d.recoveryIntervalMs, 0),
  };
}

export function resolveQueueWorkerOptions(options: unknown): WorkerConfig {
  const given = checkObject(options);
  rejectUnknown(given, QUEUE_KEYS, FLOW_KEYS, "queue");
  const queueName = given.queueName;
  if (
    typeof queueName !== "string" || !new RegExp(SLUG_PATTERN).test(queueName) ||
    queueName.length > MAX_FLOW_SLUG_LENGTH
  ) {
    throw new WorkerOptionError(
      "queueName",
      `must be a pgmq queue name (letters, digits and _, at most ${MAX_FLOW_SLUG_LENGTH} ` +
        `characters, not starting with a digit), got ${describe(queueName)}`,
    );
  }
  return {
    ...resolveCommon(given, QUEUE_WORKER_DEFAULTS),
    kind: "queue",
    queueName,
    retry: resolveRetry(given.retry),
    compileOnStartup: false,
    recreateOnMismatch: false,
    recoveryIntervalMs: 0,
  };
}

/** The options both kinds share; `kind` gives the defaults that differ between them. */
function resolveCommon(
  given: Record<string, unknown>,
  kind: { visibilityTimeout: number; pollIntervalMs: number },
) {
  const d = COMMON_DEFAULTS;
  const sql = given.sql;
  if (sql !== undefined) {
    const candidate = sql as { begin?: unknown; reserve?: unknown; options?: { max?: unknown } };
    if (
      typeof sql !== "function" || typeof candidate.begin !== "function" ||
      typeof candidate.reserve !== "function"
    ) {
      throw new WorkerOptionError("sql", `must be a postgres.js pool, got ${describe(sql)}`);
    }
    const max = candidate.options?.max;
    if (typeof max === "number" && max < 2) {
      throw new WorkerOptionError(
        "sql",
        `must be a pool of at least 2 connections (max >= 2, got ${max}): ` +
          `one is kept for long polls`,
      );
    }
    if (given.connectionString !== undefined) {
      throw new WorkerOptionError("sql", "and connectionString cannot both be given");
    }
  }
  const connectionString = given.connectionString;
  if (
    connectionString !== undefined &&
    (typeof connectionString !== "string" || !/^postgres(ql)?:\/\//.test(connectionString))
  ) {
    throw new WorkerOptionError(
      "connectionString",
      `must be a postgres:// or postgresql:// URL, got ${
        typeof connectionString === "string" ? "a string without that scheme" : describe(
          connectionString,
        )
      }`,
    );
  }
  const listen = given.listen ?? d.listen;
  if (listen !== true && listen !== false && listen !== "auto") {
    throw new WorkerOptionError("listen", `must be true, false or "auto", got ${describe(listen)}`);
  }
  const fromEnv = given.logLevel === undefined
    ? logLevelFromEnv(given.env as Record<string, string | undefined> | undefined)
    : undefined;
  const logLevel = given.logLevel ?? fromEnv ?? d.logLevel;
  if (typeof logLevel !== "string" || !LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new WorkerOptionError(
      fromEnv === undefined ? "logLevel" : "logLevel (from env EDGE_WORKER_LOG_LEVEL)",
      `must be one of ${LOG_LEVELS.join(", ")}, got ${describe(logLevel)}`,
    );
  }
  const functionName = given.functionName;
  if (functionName !== undefined && (typeof functionName !== "string" || functionName === "")) {
    throw new WorkerOptionError(
      "functionName",
      `must be a non-empty string, got ${describe(functionName)}`,
    );
  }
  const logSink = given.logSink;
  if (logSink !== undefined && typeof logSink !== "function") {
    throw new WorkerOptionError("logSink", `must be a function, got ${describe(logSink)}`);
  }
  return {
    maxConcurrent: int(given, "maxConcurrent", d.maxConcurrent, 1),
    batchSize: int(given, "batchSize", d.batchSize, 1),
    maxPollSeconds: int(given, "maxPollSeconds", d.maxPollSeconds, 1),
    pollIntervalMs: int(given, "pollIntervalMs", kind.pollIntervalMs, 1),
    visibilityTimeout: int(given, "visibilityTimeout", kind.visibilityTimeout, 1),
    heartbeatIntervalMs: int(given, "heartbeatIntervalMs", d.heartbeatIntervalMs, 10),
    maxPgConnections: int(given, "maxPgConnections", d.maxPgConnections, 2),
    shutdownGraceMs: int(given, "shutdownGraceMs", d.shutdownGraceMs, 0),
    listen: listen as ListenMode,
    logLevel: logLevel as LogLevel,
    functionName: functionName as string | undefined,
    sql: sql as Sql | undefined,
    connectionString: connectionString as string | undefined,
    env: resolveEnv(given.env),
    logSink: logSink as LogSink | undefined,
  };
}

/**
 * Our spellings (`compileOnStartup`, `recreateOnMismatch`) and pgflow's (`compilation`) mean the
 * same; both may be given only when they agree.
 */
function resolveCompilation(
  given: Record<string, unknown>,
): { compileOnStartup: boolean; recreateOnMismatch: boolean } {
  const d = FLOW_WORKER_DEFAULTS;
  const compileOnStartup = bool(given, "compileOnStartup", d.compileOnStartup);
  const recreateOnMismatch = bool(given, "recreateOnMismatch", d.recreateOnMismatch);
  const compilation = given.compilation;
  if (compilation === undefined) {
    if (!compileOnStartup && recreateOnMismatch) {
      throw new WorkerOptionError(
        "recreateOnMismatch",
        "needs compileOnStartup: a worker that does not compile never recreates its flow",
      );
    }
    return { compileOnStartup, recreateOnMismatch };
  }
  let fromPgflow: { compileOnStartup: boolean; recreateOnMismatch: boolean };
  if (compilation === false) {
    fromPgflow = { compileOnStartup: false, recreateOnMismatch: false };
  } else if (
    typeof compilation === "object" && compilation !== null && !Array.isArray(compilation)
  ) {
    const options = compilation as Record<string, unknown>;
    for (const key of Object.keys(options)) {
      if (key !== "allowDataLoss") {
        throw new WorkerOptionError(`compilation.${key}`, "is not known (known: allowDataLoss)");
      }
    }
    const allowDataLoss = options.allowDataLoss ?? false;
    if (typeof allowDataLoss !== "boolean") {
      throw new WorkerOptionError(
        "compilation.allowDataLoss",
        `must be true or false, got ${describe(allowDataLoss)}`,
      );
    }
    fromPgflow = { compileOnStartup: true, recreateOnMismatch: allowDataLoss };
  } else {
    throw new WorkerOptionError(
      "compilation",
      `must be false or { allowDataLoss?: boolean }, got ${describe(compilation)}`,
    );
  }
  for (const key of ["compileOnStartup", "recreateOnMismatch"] as const) {
    if (given[key] !== undefined && given[key] !== fromPgflow[key]) {
      throw new WorkerOptionError(
        "compilation",
        `contradicts ${key}: ${key}: ${given[key]} means the opposite of compilation: ${
          compilation === false ? "false" : JSON.stringify(compilation)
        } (give one spelling)`,
      );
    }
  }
  return fromPgflow;
}

function resolveRetry(value: unknown): ResolvedRetryPolicy {
  if (value === undefined) return { ...QUEUE_WORKER_DEFAULTS.retry };
  if (typeof value !== "object" || value === null) {
    throw new WorkerOptionError("retry", `must be an object, got ${describe(value)}`);
  }
  const retry = value as Record<string, unknown>;
  const strategy = retry.strategy;
  if (strategy !== "fixed" && strategy !== "exponential") {
    throw new WorkerOptionError(
      "retry.strategy",
      `must be "fixed" or "exponential", got ${describe(strategy)}`,
    );
  }
  const known = strategy === "fixed"
    ? ["strategy", "limit", "baseDelay"]
    : ["strategy", "limit", "baseDelay", "maxDelay"];
  for (const key of Object.keys(retry)) {
    if (!known.includes(key)) {
      throw new WorkerOptionError(
        `retry.${key}`,
        `is not known for the ${strategy} strategy (known: ${known.join(", ")})`,
      );
    }
  }
  const limit = int(retry, "limit", 5, 0, "retry.");
  const baseDelay = int(retry, "baseDelay", 3, 0, "retry.");
  if (strategy === "fixed") return { strategy, limit, baseDelay };
  const maxDelay = int(retry, "maxDelay", Math.max(300, baseDelay), baseDelay, "retry.");
  return { strategy, limit, baseDelay, maxDelay };
}

function resolveEnv(value: unknown): Record<string, string | undefined> {
  const base = platformEnv();
  if (value === undefined) return base;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WorkerOptionError("env", `must be an object of strings, got ${describe(value)}`);
  }
  for (const [key, entry] of Object.entries(value)) {
    if (entry !== undefined && typeof entry !== "string") {
      throw new WorkerOptionError(`env.${key}`, `must be a string, got ${describe(entry)}`);
    }
  }
  return { ...base, ...(value as Record<string, string | undefined>) };
}

function checkObject(options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`createWorker: options must be an object, got ${describe(options)}`);
  }
  return options as Record<string, unknown>;
}

function rejectUnknown(
  given: Record<string, unknown>,
  known: readonly string[],
  other: readonly string[],
  kind: "flow" | "queue",
): void {
  for (const key of Object.keys(given)) {
    if (known.includes(key)) continue;
    if (other.includes(key)) {
      const otherKind = kind === "flow" ? "queue" : "flow";
      throw new WorkerOptionError(key, `only applies to ${otherKind} workers`);
    }
    const near = known.find((candidate) =>
      editDistance(candidate.toLowerCase(), key.toLowerCase()) <= 2
    );
    throw new WorkerOptionError(
      key,
      `is not a known option${near ? ` (did you mean ${near}?)` : ""}; known: ${known.join(", ")}`,
    );
  }
}

function int(
  given: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  prefix = "",
): number {
  const value = given[key];
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > MAX_INT) {
    throw new WorkerOptionError(
      prefix + key,
      `must be an integer between ${min} and ${MAX_INT}, got ${describe(value)}`,
    );
  }
  return value;
}

function bool(given: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = given[key];
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new WorkerOptionError(key, `must be true or false, got ${describe(value)}`);
  }
  return value;
}

/** Levenshtein distance, for "did you mean" hints. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return "a function";
  return typeof value === "object" ? "an object" : String(typeof value);
}

/**
 * `EDGE_WORKER_LOG_LEVEL` sets the level when the code does not, so a deployed
 * function's verbosity can change with a secret instead of a redeploy.
 */
function logLevelFromEnv(
  env: Readonly<Record<string, string | undefined>> | undefined,
): string | undefined {
  if (env?.EDGE_WORKER_LOG_LEVEL !== undefined) return env.EDGE_WORKER_LOG_LEVEL;
  return platformEnvVar("EDGE_WORKER_LOG_LEVEL");
}
