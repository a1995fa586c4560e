/**
 * What a handler receives as its second argument. The worker fills it in; the DSL only
 * declares its type so that handlers are type-checked where they are written.
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "../db/connect.ts";

/** The pgmq message a task was started from (as `pgmq.read_with_poll` returns it). */
export interface RawMessage {
  msg_id: number;
  read_ct: number;
  enqueued_at: string;
  vt: string;
  message: { flow_slug: string; run_id: string; step_slug: string; task_index: number };
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
  /** Aborts when the step's timeout passes or the worker shuts down. */
  signal: AbortSignal;
  /** Aborts only when the worker shuts down. */
  shutdownSignal: AbortSignal;
  rawMessage: RawMessage;
  stepTask: StepTask;
  /** The worker's resolved configuration, read-only. */
  workerConfig: Readonly<Record<string, unknown>>;
}
