/**
 * `createClient(...)`: starts flows and follows their runs, typed by the flow. It talks to the
 * database through a transport: supabase-js (RPC + Realtime broadcast; browser or server), a
 * postgres.js pool (the RPCs as SQL, events by LISTEN), or any `ClientTransport`.
 */
import { type AnyFlow, isFlow } from "../dsl/flow.ts";
import { type PostgresLike, postgresTransport } from "./postgres_transport.ts";
import { FlowRun } from "./run.ts";
import { type SupabaseLike, supabaseTransport } from "./supabase_transport.ts";
import type { ClientTransport, InputOf, RunEvent, RunWithStates } from "./types.ts";

export interface ClientOptions {
  /** Errors nobody awaits (a failed re-read after an event, a throwing listener). */
  onError?: (error: unknown) => void;
}

export interface StartFlowOptions {
  /** Choose the run id yourself (e.g. for idempotent starts); default a random UUID. */
  runId?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class EdgeflowClient {
  readonly transport: ClientTransport;
  readonly #onError: (error: unknown) => void;
  readonly #runs = new Set<FlowRun<unknown>>();
  #closed = false;

  constructor(transport: ClientTransport, options: ClientOptions = {}) {
    this.transport = transport;
    this.#onError = options.onError ??
      ((error) => console.warn("edgeflow client:", error instanceof Error ? error.message : error));
  }

  /**
   * Starts a run of `flow` (a Flow, or its slug with the flow type as the type argument:
   * `startFlow<typeof MyFlow>("my_flow", input)`) and returns its handle, subscribed before the
   * run starts so no event is missed.
   */
  async startFlow<F extends AnyFlow = AnyFlow>(
    flow: F | string,
    input: InputOf<F>,
    options: StartFlowOptions = {},
  ): Promise<FlowRun<F>> {
    const flowSlug = slugOf(flow);
    const given = options.runId ?? crypto.randomUUID();
    if (typeof given !== "string" || !UUID.test(given)) {
      throw new TypeError(`startFlow: runId must be a UUID, got ${JSON.stringify(given)}`);
    }
    // As PostgreSQL prints it, which is how it names the run's channel.
    const runId = given.toLowerCase();
    return await this.#open<F>(
      runId,
      () => this.transport.startFlowWithStates(flowSlug, input, runId),
    );
  }

  /**
   * A handle on an existing run (e.g. one started elsewhere). While this client follows the run
   * already, that handle is returned (one subscription per run: supabase-js shares a channel
   * per topic).
   */
  async getRun<F extends AnyFlow = AnyFlow>(runId: string): Promise<FlowRun<F>> {
    if (typeof runId !== "string" || !UUID.test(runId)) {
      throw new TypeError(`getRun: runId must be a UUID, got ${JSON.stringify(runId)}`);
    }
    const open = [...this.#runs].find((run) => run.runId === runId.toLowerCase());
    if (open) {
      await open.refresh();
      return open as FlowRun<F>;
    }
    return await this.#open<F>(
      runId.toLowerCase(),
      () => this.transport.getRunWithStates(runId),
    );
  }

  /** Disposes every run handle and closes what the transport opened itself. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#runs].map((run) => run.dispose()));
    this.#runs.clear();
    await this.transport.close?.();
  }

  async #open<F>(runId: string, read: () => Promise<RunWithStates>): Promise<FlowRun<F>> {
    if (this.#closed) throw new Error("edgeflow client: closed");
    // Events may come before the handle exists: they wait in `early`.
    const target: { run?: FlowRun<F> } = {};
    const early: RunEvent[] = [];
    const unsubscribe = await this.transport.subscribe(runId, (event) => {
      if (target.run) target.run.receive(event);
      else early.push(event);
    });
    let state: RunWithStates;
    try {
      state = await read();
    } catch (error) {
      await unsubscribe().catch(() => {});
      throw error;
    }
    const run = new FlowRun<F>(runId, this.transport, state, this.#onError);
    run.attach(async () => {
      this.#runs.delete(run as FlowRun<unknown>);
      await unsubscribe();
    });
    this.#runs.add(run as FlowRun<unknown>);
    target.run = run;
    // Events that came while reading are already in `state`, but listeners added right after
    // this returns should still hear them: replay them through the normal path.
    for (const event of early) run.receive(event);
    run.settle();
    return run;
  }
}

/**
 * A client over supabase-js (`createClient(supabase)`), a postgres.js pool
 * (`createClient(sql)`), or a transport of your own (`createClient({ transport })`).
 */
export function createClient(
  connection: SupabaseLike | PostgresLike | { transport: ClientTransport },
  options: ClientOptions = {},
): EdgeflowClient {
  return new EdgeflowClient(transportFor(connection), options);
}

function transportFor(connection: unknown): ClientTransport {
  if (typeof connection === "object" && connection !== null && "transport" in connection) {
    return (connection as { transport: ClientTransport }).transport;
  }
  const candidate = connection as Record<string, unknown> | null;
  if (
    (typeof connection === "object" || typeof connection === "function") && candidate !== null
  ) {
    if (typeof candidate.schema === "function" && typeof candidate.channel === "function") {
      return supabaseTransport(connection as SupabaseLike);
    }
    if (typeof candidate.listen === "function" && typeof candidate.unsafe === "function") {
      return postgresTransport(connection as PostgresLike);
    }
  }
  throw new TypeError(
    "createClient: give a supabase-js client, a postgres.js pool, or { transport }",
  );
}

function slugOf(flow: AnyFlow | string): string {
  if (typeof flow === "string" && flow !== "") return flow;
  if (isFlow(flow)) return flow.slug;
  throw new TypeError(`startFlow: give a Flow or a flow slug, got ${JSON.stringify(flow)}`);
}
