/**
 * One instance of a function: an isolate (a Deno module Worker running isolate_bootstrap.ts)
 * and its life as Supabase runs it.
 *
 * States: `running` (takes new requests) -> `retiring` (half the wall-clock limit: no new
 * requests, existing ones and `waitUntil` work continue) -> `dying` (`beforeunload` was
 * dispatched; terminated as soon as it is idle, or at its deadline). An instance is *idle*
 * when it has no open request and no pending `EdgeRuntime.waitUntil` promise.
 *
 * - wall clock: retire at 50%, `beforeunload` (wall_clock) at 90%, terminate at 100%;
 * - early_drop: idle for `earlyDropMs` while running, or idle at all once retired:
 *   `beforeunload` (early_drop), then terminate (when still idle, or at the wall-clock limit);
 * - termination (runtime shutdown): `beforeunload` (termination), then terminate when idle or
 *   after the grace period.
 *
 * Requests still open at a forced end are answered by the runtime: 546 for a limit, 503 for a
 * shutdown or a failed boot, 500 for a crash.
 */
import { bootError, resourceLimit, shuttingDown, workerError } from "./error_responses.ts";
import type { EndReason, LifecycleEvent, LifecycleEventType } from "./events.ts";
import type { FunctionEntry } from "./functions_dir.ts";
import { type EnforcedUnloadReason, type Timeline, wallClockTimeline } from "./limits.ts";
import { type IsolatePermissions, workerDenoOptions } from "./permissions.ts";
import {
  deserializeResponse,
  type HostMessage,
  type IsolateMessage,
  type SerializedRequest,
  serializeRequest,
  transferables,
} from "./protocol.ts";

type Timer = ReturnType<typeof setTimeout>;

export type InstanceState = "running" | "retiring" | "dying";

export interface InstanceInfo {
  /** Also the instance's `SB_EXECUTION_ID`. */
  id: string;
  function: string;
  state: InstanceState;
  /** `true` once the function called `Deno.serve`. */
  ready: boolean;
  startedAt: Date;
  retireAt: Date;
  /** When `beforeunload` (wall_clock) is due. */
  beforeUnloadAt: Date;
  killAt: Date;
  openRequests: number;
  pendingWaitUntil: number;
}

export interface InstanceConfig {
  wallClockMs: number;
  /** Idle time after which a running instance is dropped; `Infinity` never drops it. */
  earlyDropMs: number;
  bootTimeoutMs: number;
  env: Record<string, string>;
  permissions: IsolatePermissions;
}

const BOOTSTRAP_URL = new URL("./isolate_bootstrap.ts", import.meta.url);

export class FunctionInstance {
  readonly id: string = crypto.randomUUID();
  readonly startedAt: number = Date.now();
  readonly timeline: Timeline;
  /** Settles when the isolate has been terminated. */
  readonly ended: Promise<void>;

  readonly #entry: FunctionEntry;
  readonly #config: InstanceConfig;
  readonly #emit: (event: LifecycleEvent) => void;
  readonly #onEnd: (instance: FunctionInstance) => void;
  readonly #worker: Worker;
  readonly #timers = new Set<Timer>();
  readonly #open = new Map<number, (response: Response) => void>();
  #queued: SerializedRequest[] = [];
  #nextRequestId = 0;
  #state: InstanceState = "running";
  #ready = false;
  #isEnded = false;
  #resolveEnded = () => {};
  #pendingWaitUntil = 0;
  #unloadReason?: EnforcedUnloadReason;
  #unloadDispatched = false;
  #idleTimer?: Timer;
  #deadline?: { at: number; reason: EnforcedUnloadReason; timer: Timer };

  constructor(
    entry: FunctionEntry,
    config: InstanceConfig,
    emit: (event: LifecycleEvent) => void,
    onEnd: (instance: FunctionInstance) => void,
  ) {
    this.#entry = entry;
    this.#config = config;
    this.#emit = emit;
    this.#onEnd = onEnd;
    this.timeline = wallClockTimeline(this.startedAt, config.wallClockMs);
    this.ended = new Promise((resolve) => this.#resolveEnded = resolve);

    this.#worker = new Worker(BOOTSTRAP_URL, {
      type: "module",
      name: `${entry.name}:${this.id}`,
      deno: workerDenoOptions(config.permissions),
    });
    this.#worker.onmessage = (event: MessageEvent<IsolateMessage>) => this.#receive(event.data);
    this.#worker.onerror = (event) => {
      event.preventDefault();
      if (this.#ready) this.#end("crash", `uncaught error: ${event.message}`);
      else this.#end("boot_failed", event.message);
    };
    this.#worker.onmessageerror = () => {
      this.#end("crash", "a message from the isolate could not be deserialized");
    };

    // Stamped with the timeline's origin: creating the Worker may take a while under load.
    this.#event("boot", undefined, undefined, this.startedAt);
    this.#post({
      type: "boot",
      functionName: entry.name,
      entryUrl: entry.entryUrl,
      executionId: this.id,
      env: config.env,
    });

    this.#at(this.startedAt + config.bootTimeoutMs, () => {
      if (!this.#ready) {
        this.#end(
          "boot_failed",
          `did not call Deno.serve(handler) within ${config.bootTimeoutMs} ms`,
        );
      }
    });
    this.#at(this.timeline.retireAt, () => this.retire());
    this.#at(this.timeline.beforeUnloadAt, () => this.unload("wall_clock", this.timeline.killAt));
    this.#setDeadline(this.timeline.killAt, "wall_clock");
  }

  get function(): string {
    return this.#entry.name;
  }

  get state(): InstanceState {
    return this.#state;
  }

  /** `true` while new requests may be routed here. */
  get acceptsRequests(): boolean {
    return this.#state === "running" && !this.#isEnded;
  }

  info(): InstanceInfo {
    return {
      id: this.id,
      function: this.#entry.name,
      state: this.#state,
      ready: this.#ready,
      startedAt: new Date(this.startedAt),
      retireAt: new Date(this.timeline.retireAt),
      beforeUnloadAt: new Date(this.timeline.beforeUnloadAt),
      killAt: new Date(this.timeline.killAt),
      openRequests: this.#open.size,
      pendingWaitUntil: this.#pendingWaitUntil,
    };
  }

  /** Runs `request` through the function; `url` is the URL the function sees. */
  async fetch(request: Request, url: string): Promise<Response> {
    const id = ++this.#nextRequestId;
    const answer = new Promise<Response>((resolve) => this.#open.set(id, resolve));
    this.#clearIdleTimer();
    let message: SerializedRequest;
    try {
      message = await serializeRequest(id, request, url);
    } catch (error) {
      this.#answer(id, new Response(`could not read the request body: ${error}`, { status: 400 }));
      return answer;
    }
    if (this.#isEnded || !this.#open.has(id)) return answer;
    if (this.#ready) this.#post({ type: "request", request: message }, transferables(message.body));
    else this.#queued.push(message);
    return answer;
  }

  /** Stops taking new requests (half the wall-clock limit). */
  retire(): void {
    if (this.#isEnded || this.#state !== "running") return;
    this.#state = "retiring";
    this.#clearIdleTimer();
    this.#event("retire");
    this.#checkIdle();
  }

  /**
   * Dispatches `beforeunload` with `reason` (once per instance) and terminates the isolate
   * when it is idle afterwards, or at `deadline` (epoch ms; never later than the wall-clock
   * limit). Settles when the isolate is gone.
   */
  unload(reason: EnforcedUnloadReason, deadline: number): Promise<void> {
    if (this.#isEnded) return this.ended;
    this.#setDeadline(deadline, reason);
    if (this.#state === "dying") return this.ended;
    this.#state = "dying";
    this.#unloadReason = reason;
    this.#clearIdleTimer();
    this.#event("beforeunload", reason);
    this.#post({ type: "beforeunload", reason });
    return this.ended;
  }

  #receive(message: IsolateMessage): void {
    if (this.#isEnded) return;
    switch (message.type) {
      case "ready": {
        this.#ready = true;
        this.#event("ready", undefined, `booted in ${Date.now() - this.startedAt} ms`);
        const queued = this.#queued;
        this.#queued = [];
        for (const request of queued) {
          this.#post({ type: "request", request }, transferables(request.body));
        }
        this.#checkIdle();
        break;
      }
      case "boot_error":
        this.#end("boot_failed", message.message);
        break;
      case "response":
        this.#answer(message.response.id, deserializeResponse(message.response));
        break;
      case "wait_until":
        this.#pendingWaitUntil += message.delta;
        if (message.delta > 0) this.#clearIdleTimer();
        else this.#checkIdle();
        break;
      case "beforeunload_dispatched":
        this.#unloadDispatched = true;
        this.#checkIdle();
        break;
      case "exit":
        this.#end("crash", `the function called Deno.exit(${message.code})`);
        break;
    }
  }

  #answer(id: number, response: Response): void {
    const resolve = this.#open.get(id);
    if (!resolve) return;
    this.#open.delete(id);
    resolve(response);
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#isEnded || !this.#ready) return;
    if (this.#open.size > 0 || this.#pendingWaitUntil > 0) return;
    switch (this.#state) {
      case "dying":
        if (this.#unloadDispatched) {
          this.#end(this.#unloadReason!, "idle after beforeunload");
        }
        break;
      case "retiring":
        this.unload("early_drop", this.timeline.killAt);
        break;
      case "running":
        if (this.#idleTimer === undefined && Number.isFinite(this.#config.earlyDropMs)) {
          this.#idleTimer = setTimeout(() => {
            this.#idleTimer = undefined;
            this.unload("early_drop", this.timeline.killAt);
          }, this.#config.earlyDropMs);
        }
        break;
    }
  }

  #clearIdleTimer(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #setDeadline(at: number, reason: EnforcedUnloadReason): void {
    at = Math.min(at, this.timeline.killAt);
    if (this.#deadline && this.#deadline.at <= at) return;
    if (this.#deadline) clearTimeout(this.#deadline.timer);
    const detail = reason === "wall_clock"
      ? `wall-clock limit of ${this.#config.wallClockMs} ms reached`
      : `${reason}: grace period over`;
    const timer = setTimeout(() => this.#end(reason, detail), Math.max(0, at - Date.now()));
    this.#deadline = { at, reason, timer };
  }

  #end(reason: EndReason, detail: string): void {
    if (this.#isEnded) return;
    this.#isEnded = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#clearIdleTimer();
    if (this.#deadline) clearTimeout(this.#deadline.timer);
    this.#worker.terminate();

    const open = [...this.#open.values()];
    this.#open.clear();
    this.#queued = [];
    let cutOff = "";
    if (open.length > 0) {
      const status = this.#endResponse(reason, detail).status;
      open.forEach((resolve) => resolve(this.#endResponse(reason, detail)));
      cutOff = `; ${open.length} open request${open.length === 1 ? "" : "s"} answered ${status}`;
    }
    if (reason === "boot_failed") this.#event("boot_failed", undefined, detail);
    if (reason === "crash") this.#event("crash", undefined, detail);
    this.#event("terminate", reason, detail + cutOff);
    this.#onEnd(this);
    this.#resolveEnded();
  }

  #endResponse(reason: EndReason, detail: string): Response {
    switch (reason) {
      case "wall_clock":
      case "early_drop":
        return resourceLimit(this.#entry.name, this.id, reason, detail);
      case "termination":
        return shuttingDown(this.#entry.name, this.id);
      case "boot_failed":
        return bootError(this.#entry.name, detail);
      case "crash":
        return workerError(this.#entry.name, detail);
    }
  }

  #at(epochMs: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, Math.max(0, epochMs - Date.now()));
    this.#timers.add(timer);
  }

  #post(message: HostMessage, transfer: Transferable[] = []): void {
    this.#worker.postMessage(message, transfer);
  }

  #event(type: LifecycleEventType, reason?: EndReason, detail?: string, at = Date.now()): void {
    this.#emit({
      type,
      at,
      function: this.#entry.name,
      instance: this.id,
      ...(reason === undefined ? {} : { reason }),
      ...(detail === undefined ? {} : { detail }),
    });
  }
}
