/** Row and value types of the SQL core (schema `pgflow`). */

/** Any value a jsonb column can hold. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export type RunStatus = "started" | "completed" | "failed" | "cancelled";
export type StepStatus = "created" | "started" | "completed" | "failed" | "cancelled" | "skipped";
/** Why a step was skipped (pgflow 0.14). */
export type SkipReason = "condition_unmet" | "handler_failed" | "dependency_skipped";
/** What an unmet condition or a task out of attempts does to its step. */
export type WhenMode = "fail" | "skip" | "skip-cascade";
export type TaskStatus = "queued" | "started" | "completed" | "failed" | "cancelled";
export type StepType = "single" | "map";

export interface FlowRow {
  flow_slug: string;
  opt_max_attempts: number;
  opt_base_delay: number;
  opt_timeout: number;
  created_at: Date;
}

export interface StepRow {
  flow_slug: string;
  step_slug: string;
  step_type: StepType;
  step_index: number;
  deps_count: number;
  opt_max_attempts: number | null;
  opt_base_delay: number | null;
  opt_timeout: number | null;
  opt_start_delay: number | null;
  required_input_pattern: Json | null;
  forbidden_input_pattern: Json | null;
  when_unmet: WhenMode;
  when_exhausted: WhenMode;
  created_at: Date;
}

export interface RunRow {
  run_id: string;
  flow_slug: string;
  status: RunStatus;
  input: Json;
  output: Json | null;
  remaining_steps: number;
  started_at: Date;
  completed_at: Date | null;
  failed_at: Date | null;
  cancelled_at: Date | null;
  /** The run this one restarts (`pgflow.restart_run`), if any. */
  restart_of_run_id: string | null;
}

export interface StepStateRow {
  flow_slug: string;
  run_id: string;
  step_slug: string;
  status: StepStatus;
  remaining_deps: number;
  initial_tasks: number | null;
  remaining_tasks: number | null;
  error_message: string | null;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  failed_at: Date | null;
  cancelled_at: Date | null;
  skip_reason: SkipReason | null;
  skipped_at: Date | null;
}

export interface StepTaskRow {
  flow_slug: string;
  run_id: string;
  step_slug: string;
  message_id: number | null;
  task_index: number;
  status: TaskStatus;
  attempts_count: number;
  error_message: string | null;
  output: Json | null;
  last_worker_id: string | null;
  queued_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  failed_at: Date | null;
  cancelled_at: Date | null;
}

/** What `pgflow.start_tasks` returns for each task to run. */
export interface StepTaskRecord {
  flow_slug: string;
  run_id: string;
  step_slug: string;
  input: Json;
  msg_id: number;
  task_index: number;
  /** The run's input (what pgflow 0.12+ workers hand to root steps). */
  flow_input?: Json;
}

/** A pgmq message as `pgmq.read` / `read_with_poll` return it. */
export interface QueueMessage<T = Json> {
  msg_id: number;
  read_ct: number;
  enqueued_at: Date;
  vt: Date;
  message: T;
  headers: Json | null;
}

/** A task message: what the SQL core sends to a flow's queue. */
export interface TaskMessage {
  flow_slug: string;
  run_id: string;
  step_slug: string;
  task_index: number;
}

/**
 * `get_run_with_states` result. Timestamps are ISO strings here because the
 * value is built as jsonb in SQL.
 */
export interface RunWithStates {
  run: JsonRow<RunRow>;
  steps: JsonRow<StepStateRow>[];
}

/** A row as `to_jsonb` renders it: Date columns become ISO strings. */
export type JsonRow<T> = {
  [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null
  : T[K];
};

export interface PruneResult {
  runs: number;
  step_states: number;
  step_tasks: number;
  archived_messages: number;
  workers: number;
}
