/**
 * The local edge runtime: an HTTP server on localhost that serves
 * `<functionsDir>/<name>/index.ts` at `/functions/v1/<name>[/...]` like Supabase, running
 * each function instance in its own isolate (instance.ts). New requests for a function go to
 * its one running instance, created on demand; retired and dying instances finish their work
 * beside it.
 */
import {
  ALLOWED_METHODS,
  methodNotAllowed,
  notFound,
  shuttingDown,
  workerError,
} from "./error_responses.ts";
import type { LifecycleEvent } from "./events.ts";
import { findFunction, type FunctionEntry, functionsDirPath } from "./functions_dir.ts";
import { FunctionInstance, type InstanceInfo } from "./instance.ts";
import { type EdgeRuntimeOptions, type ResolvedOptions, resolveOptions } from "./options.ts";
import { checkIsolatePermissions } from "./permissions.ts";
import { FUNCTIONS_PREFIX, functionUrl, routeOf } from "./routing.ts";

/** How many lifecycle events `runtime.events` keeps (the oldest are dropped). */
const EVENTS_KEPT = 1_000;

export interface EdgeRuntime {
  /** `http://127.0.0.1:<port>`; functions are at `${url}/functions/v1/<name>`. */
  readonly url: string;
  /** Absolute path of the functions directory. */
  readonly functionsDir: string;
  /** The most recent lifecycle events, oldest first. */
  readonly events: readonly LifecycleEvent[];
  /**
   * Calls a function without going through the socket: `invoke("echo")`,
   * `invoke("echo/sub/path?x=1", { method: "POST", body })`. Same answers as over HTTP.
   */
  invoke(name: string, init?: RequestInit): Promise<Response>;
  /** Handles a request as the HTTP server does (its URL's path picks the function). */
  fetch(request: Request): Promise<Response>;
  /** The live instances of a function (running, retiring, dying), oldest first. */
  instances(name: string): InstanceInfo[];
  /**
   * Shuts down: new requests get 503; every instance gets `beforeunload` (termination) and is
   * terminated when idle or after `terminationGraceMs`; then the server closes.
   */
  stop(): Promise<void>;
}

export async function startEdgeRuntime(options: EdgeRuntimeOptions): Promise<EdgeRuntime> {
  const resolved = resolveOptions(options);
  const functionsDir = functionsDirPath(resolved.functionsDir);
  try {
    if (!(await Deno.stat(functionsDir)).isDirectory) throw new Error("not a directory");
  } catch (error) {
    throw new Error(`startEdgeRuntime: functions directory ${functionsDir} is unusable: ${error}`);
  }
  await checkIsolatePermissions(resolved.permissions);
  return new LocalEdgeRuntime(resolved, functionsDir);
}

class LocalEdgeRuntime implements EdgeRuntime {
  readonly url: string;
  readonly functionsDir: string;
  readonly #options: ResolvedOptions;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #pools = new Map<string, FunctionInstance[]>();
  readonly #events: LifecycleEvent[] = [];
  #stopping?: Promise<void>;

  constructor(options: ResolvedOptions, functionsDir: string) {
    this.#options = options;
    this.functionsDir = functionsDir;
    this.#server = Deno.serve(
      { hostname: options.hostname, port: options.port, onListen: () => {} },
      (request) => this.fetch(request),
    );
    const host = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
    this.url = `http://${host}:${this.#server.addr.port}`;
  }

  get events(): readonly LifecycleEvent[] {
    return this.#events;
  }

  invoke(name: string, init?: RequestInit): Promise<Response> {
    const path = name.replace(/^\/+/, "");
    return this.fetch(new Request(`${this.url}${FUNCTIONS_PREFIX}${path}`, init));
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const route = routeOf(url.pathname);
    if (!route) return notFound(url.pathname);
    if (this.#stopping) return shuttingDown(route.name);
    if (!(ALLOWED_METHODS as readonly string[]).includes(request.method)) {
      return methodNotAllowed(request.method, route.name);
    }
    try {
      const entry = await findFunction(this.functionsDir, route.name);
      if (!entry) return notFound(url.pathname, route.name);
      if (this.#stopping) return shuttingDown(route.name);
      return await this.#runningInstance(entry).fetch(request, functionUrl(url, route));
    } catch (error) {
      return workerError(route.name, `the runtime failed to run it: ${error}`);
    }
  }

  instances(name: string): InstanceInfo[] {
    return (this.#pools.get(name) ?? []).map((instance) => instance.info());
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const deadline = Date.now() + this.#options.terminationGraceMs;
      const all = [...this.#pools.values()].flat();
      await Promise.all(all.map((instance) => instance.unload("termination", deadline)));
      await this.#server.shutdown();
    })();
    return this.#stopping;
  }

  /** The function's running instance, created when there is none. */
  #runningInstance(entry: FunctionEntry): FunctionInstance {
    const pool = this.#pools.get(entry.name) ?? [];
    this.#pools.set(entry.name, pool);
    return pool.find((instance) => instance.acceptsRequests) ?? this.#createInstance(entry, pool);
  }

  #createInstance(entry: FunctionEntry, pool: FunctionInstance[]): FunctionInstance {
    const instance = new FunctionInstance(
      entry,
      {
        wallClockMs: this.#options.wallClockMs,
        earlyDropMs: this.#options.earlyDropMs,
        bootTimeoutMs: this.#options.bootTimeoutMs,
        env: this.#options.env,
        permissions: this.#options.permissions,
      },
      (event) => this.#record(event),
      (ended) => {
        const index = pool.indexOf(ended);
        if (index !== -1) pool.splice(index, 1);
      },
    );
    pool.push(instance);
    return instance;
  }

  #record(event: LifecycleEvent): void {
    this.#events.push(event);
    if (this.#events.length > EVENTS_KEPT) {
      this.#events.splice(0, this.#events.length - EVENTS_KEPT);
    }
    try {
      this.#options.onEvent(event);
    } catch (error) {
      console.error("edge runtime: onEvent threw:", error);
    }
  }
}
