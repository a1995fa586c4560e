/**
 * Limits and names shared by the SQL engine and TypeScript: the one place they
 * are written. The SQL source (sql/) names them as `{{NAME}}` placeholders that
 * `deno task sql:build` fills in, so the engine, the DSL and the worker agree.
 */

/** A flow's slug names its pgmq queue; pgmq 1.5 allows queue names of at most 47 characters. */
export const MAX_FLOW_SLUG_LENGTH = 47;
/** Step slugs are keys in handler inputs and run outputs; a sane upper bound. */
export const MAX_STEP_SLUG_LENGTH = 128;
/** What a slug looks like (flows and steps): an SQL-friendly identifier. */
export const SLUG_PATTERN = "^[a-zA-Z_][a-zA-Z0-9_]*$";
/** The slug no step may take: handler inputs carry the flow input under `run`. */
export const RESERVED_SLUG = "run";

/** The channel the engine notifies when it queues visible messages for a queue (flow). */
export const QUEUE_CHANNEL_PREFIX = "pgflow:queue:";

/**
 * The channel `pgflow.cancel_run` notifies (payload: the run id) so that workers of the flow
 * abort its handlers at once; with a 47-character flow slug it stays within PostgreSQL's
 * 63-byte channel names.
 */
export const CANCEL_CHANNEL_PREFIX = "pgflow:cancel:";

/** The longest reason `pgflow.cancel_run` accepts (it is copied onto each cancelled step and task). */
export const MAX_CANCEL_REASON_LENGTH = 1000;

/**
 * Seconds added to a step's timeout for the message's visibility: the worker aborts the
 * handler at the timeout and reports; the margin lets that report arrive before the
 * message reappears for another worker.
 */
export const TIMEOUT_MARGIN_SECONDS = 2;

/**
 * The range of each flow and step option. Bounded so the engine's arithmetic never
 * overflows: `timeout + margin` is an int visibility timeout and `timeout * 1000` a JS
 * timer; retry delays are capped by `calculate_retry_delay`.
 */
/** 0 is pgflow's "one attempt, no retry" (fail_task retries while attempts < max_attempts). */
export const MIN_MAX_ATTEMPTS = 0;
export const MAX_MAX_ATTEMPTS = 1000;
export const MIN_BASE_DELAY = 0;
export const MAX_BASE_DELAY = 86_400;
export const MIN_TIMEOUT = 1;
export const MAX_TIMEOUT = 86_400;
export const MIN_START_DELAY = 0;
export const MAX_START_DELAY = 604_800;
