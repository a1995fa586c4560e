/** What a client transport carries, and the typed view of a flow the client gives. */
import type { Flow } from "../dsl/flow.ts";
import type { FlowInput, FlowOutput } from "../dsl/infer.ts";
import type { StepMap } from "../dsl/types.ts";
import type { Json, RunStatus, RunWithStates, StepStatus } from "../db/types.ts";

export type { Json, RunStatus, RunWithStates, StepStatus };

/**
 * One event of a run, as the SQL core emits it on topic `pgflow:run:<run_id>`. Over LISTEN it
 * carries ids, slugs, statuses and timestamps only; over Supabase Realtime also `input`,
 * `output` and `error_message`. The client re-reads the run after each one either way.
 */
export interface RunEvent {
  /** `run:started`, `run:completed`, `run:failed`, `step:<slug>:started|completed|failed`. */
  event: string;
  /** `run:<status>` or `step:<status>`. */
  event_type: string;
  run_id: string;
  status: string;
  flow_slug?: string;
  step_slug?: string;
  [key: string]: Json | undefined;
}

/**
 * How a client reaches the database: the two client RPCs and the run's events. The supabase-js
 * and postgres.js transports implement it; anything else can too.
 */
export interface ClientTransport {
  /** `pgflow.start_flow_with_states(flow_slug, input, run_id)`. */
  startFlowWithStates(flowSlug: string, input: unknown, runId: string): Promise<RunWithStates>;
  /** `pgflow.get_run_with_states(run_id)`. */
  getRunWithStates(runId: string): Promise<RunWithStates>;
  /**
   * Delivers the events of topic `pgflow:run:<runId>`; resolves once subscribed (so nothing
   * emitted afterwards is missed) with the unsubscribe.
   */
  subscribe(runId: string, onEvent: (event: RunEvent) => void): Promise<() => Promise<void>>;
  /** Releases what the transport itself opened (not a pool or client it was given). */
  close?(): Promise<void>;
}

/** The steps of a flow type; `Record<string, never>` for an untyped flow. */
type StepsOf<F> = F extends Flow<infer _Input, infer TSteps extends StepMap> ? TSteps : never;

/** Step slugs of a flow type (`string` when the flow is not typed). */
export type StepSlugOf<F> = [StepsOf<F>] extends [never] ? string : keyof StepsOf<F> & string;

/** The input `startFlow` takes: the flow's `TInput`, or any JSON for an untyped flow. */
export type InputOf<F> = F extends Flow<infer _Input, infer _Steps> ? FlowInput<F> : Json;

/** A completed run's output: `{ <leaf slug>: <output> }`, or JSON for an untyped flow. */
export type OutputOf<F> = F extends Flow<infer _Input, infer _Steps> ? FlowOutput<F> : Json;

type Phase = "started" | "completed" | "failed";

/** Event names of a flow's runs. */
export type RunEventName<F> = `run:${Phase}` | `step:${StepSlugOf<F>}:${Phase}`;

/** What `run.on` listens to: an event name, `run:*`, `step:<slug>:*`, `step:*` or `*`. */
export type RunEventPattern<F> =
  | RunEventName<F>
  | "run:*"
  | `step:${StepSlugOf<F>}:*`
  | "step:*"
  | "*";

/** A step's state in a run (`pgflow.step_states`). */
export interface StepState<TSlug extends string = string> {
  slug: TSlug;
  status: StepStatus;
  /** Tasks still to finish (a map step: one per element), null before the step started. */
  remainingTasks: number | null;
  errorMessage: string | null;
  startedAt: Date | null;
  completedAt: Date | null;
  failedAt: Date | null;
}
