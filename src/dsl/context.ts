/**
 * What a handler receives as its second argument. The worker fills it in; the DSL only
 * declares its type so that handlers are type-checked where they are written.
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "../db/connect.ts";

/** The pgmq message a task was started from (as `pgmq.read` returned it). */
export interface RawMessage {
  msg_id: number;
  /** How many times the message was read, this read included. */
  read_ct: number;
  enqueued_at: Date;
  /** When the message becomes visible again (as of the read; start_tasks moves it on). */
  vt: Date;
  message: { flow_slug: string; run_id: string; step_slug: string; task_index: number };
  headers: unknown;
}

/** The row `pgflow.start_tasks` returned for this task. */
export interface StepTask<TInput = unknown> {
  flow_slug: string;
  run_id: string;
  step_slug: string;
  task_index: number;
  msg_id: number;
  input: TInput;
}

export interface StepContext {
  /** The worker's environment variables. */
  env: Record<string, string | undefined>;
  /** The worker's connection pool (postgres.js). */
  sql: Sql;
  /** A supabase-js client when `SUPABASE_URL` and a service key are set. */
  supabase: SupabaseClient | undefined;
  /**
   * Aborts when the step's timeout passes (the task is then failed and retried), or when the
   * worker, shutting down, stops waiting for the handler (after its shutdown grace time).
   */
  signal: AbortSignal;
  /** Aborts as soon as the worker starts shutting down (it still waits for the handler). */
  shutdownSignal: AbortSignal;
  /**
   * Which attempt at this task this is: 1 for the first, 2 for the first retry, and so on up to
   * the step's `maxAttempts` (`step_tasks.attempts_count` as `start_tasks` counted it; unlike
   * `rawMessage.read_ct`, which counts every read of the message).
   */
  attempt: number;
  rawMessage: RawMessage;
  stepTask: StepTask;
  /** The worker's resolved configuration, read-only. */
  workerConfig: Readonly<Record<string, unknown>>;
}
