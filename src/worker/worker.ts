/**
 * The worker's runtime, shared by flow and queue workers: startup (connection, preparation,
 * registration), the loop's parts (poller, executor, heartbeat, recovery, wake-ups), and the
 * graceful shutdown. What differs between the two kinds lives in a `WorkerKind`.
 *
 * Startup: resolve the connection; `kind.prepare` (a flow worker checks/compiles its flow);
 * register in `pgflow.workers`; LISTEN for wake-ups when notifications arrive (wakeup.ts), else
 * open a connection of its own for long polls; then run.
 *
 * Shutdown (stop(), beforeunload, SIGTERM/SIGINT, deprecation): stop polling; let in-flight
 * handlers finish within `shutdownGraceMs` and report them (those still running after it are
 * aborted and reported as failed); stop the heartbeat; mark the worker stopped; close the pool
 * (only a pool the worker opened itself); then wait for the successor request, if a platform
 * limit made it send one (it is bounded by its own timeout).
 */
import { companionPool, keepArrayTypes, type Sql } from "../db/connect.ts";
import type { Json, QueueMessage } from "../db/types.ts";
import { markWorkerStopped, registerWorker } from "../db/workers.ts";
import { resolveConnection, type WorkerConnection } from "./connection.ts";
import { type SharedContext, sharedContext } from "./context.ts";
import { Executor } from "./executor.ts";
import { errorText } from "./failure_message.ts";
import { Heartbeat } from "./heartbeat.ts";
import { Lifecycle, type WorkerState } from "./lifecycle.ts";
import { Logger } from "./logger.ts";
import type { WorkerConfig } from "./options.ts";
import { type IdleMode, type LongPoll, Poller } from "./poller.ts";
import { StalledTaskRecovery } from "./recovery.ts";
import { onPlatformShutdown } from "./shutdown.ts";
import { requestSuccessor, wantsSuccessor } from "./successor.ts";
import { setUpWakeups, type Wakeups } from "./wakeup.ts";
import { cancelChannel, RunCancellations } from "./cancellation.ts";

/** What `GET` on the worker's endpoint answers, and `worker.status()` returns. */
export interface WorkerStatus {
  workerId: string;
  state: WorkerState;
  /** The flow's slug (flow workers). */
  flow?: string;
  /** The queue's name (queue workers). */
  queue?: string;
  functionName?: string;
  /** Handlers running now. */
  inFlight: number;
  tasksCompleted: number;
  tasksFailed: number;
  /** Why the worker could not start. */
  error?: string;
}

/** Counters the kinds update. */
export interface WorkerStats {
  completed: number;
  failed: number;
}

/** What a kind's dispatcher works with. */
export interface WorkerRuntime {
  workerId: string;
  sql: Sql;
  log: Logger;
  executor: Executor;
  context: SharedContext;
  config: WorkerConfig;
  stats: WorkerStats;
  /** Aborts the handlers of tasks whose run was cancelled (flow workers track their tasks). */
  cancellations: RunCancellations;
  /** Aborts when the worker closes its pool: reports still waiting for the database give up. */
  closing: AbortSignal;
}

/** The part that differs between a flow worker and a queue worker. */
export interface WorkerKind {
  /** The pgmq queue to read (a flow's queue is named by its slug). */
  queueName: string;
  /** `{ flow }` or `{ queue }`: shown in status and on every log line. */
  labels: { flow?: string; queue?: string };
  /** Runs before registration: check/compile the flow, create the queue. */
  prepare(sql: Sql, log: Logger): Promise<void>;
  /** Connects the kind to the running worker: how claimed messages are taken over. */
  attach(runtime: WorkerRuntime): {
    /** Takes claimed messages (one reserved executor slot each) and runs them. */
    dispatch(messages: QueueMessage<Json>[]): void;
    /** Optional faster non-blocking read (see PollerOptions.readNow). */
    readNow?(qty: number): Promise<number>;
    /** Optional long poll that takes over what it claims (see PollerOptions.longPollNow). */
    longPollNow?(sql: Sql, qty: number): LongPoll;
  };
  /** Poll at once after each finished task (a flow task may have made its dependents ready). */
  wakeOnSettle: boolean;
  /**
   * The SQL core notifies `pgflow:queue:<name>` when it queues visible messages (flows), so a
   * worker that may LISTEN need not long-poll. A plain queue's senders do not notify.
   */
  announced: boolean;
  /** Periodically fail tasks whose worker vanished (flows only). */
  recoverStalledTasks: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `SB_EXECUTION_ID` (one per Supabase isolate) when it is a UUID, else a random one. */
export function resolveWorkerId(env: Record<string, string | undefined>): string {
  const id = env.SB_EXECUTION_ID;
  return id && UUID.test(id) ? id.toLowerCase() : crypto.randomUUID();
}

class StopDuringStart extends Error {}

export class Worker {
  readonly workerId: string;
  readonly config: WorkerConfig;
  readonly #kind: WorkerKind;
  readonly #lifecycle: Lifecycle;
  readonly #log: Logger;
  readonly #shutdown = new AbortController();
  readonly #closing = new AbortController();
  readonly #stats: WorkerStats = { completed: 0, failed: 0 };
  readonly #done: Promise<void>;
  #resolveDone!: () => void;
  #functionName: string | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #stopRequested: string | undefined;
  #error: Error | undefined;
  #connection: WorkerConnection | undefined;
  #registered = false;
  #longPollSql: Sql | undefined;
  #executor: Executor | undefined;
  #poller: Poller | undefined;
  #heartbeat: Heartbeat | undefined;
  #recovery: StalledTaskRecovery | undefined;
  #wakeups: Wakeups | undefined;
  #cancellations: RunCancellations | undefined;
  #cancellationsListened = false;
  #unsubscribePlatform: (() => void) | undefined;
  #successor: Promise<void> | undefined;
  #context: SharedContext | undefined;

  constructor(kind: WorkerKind, config: WorkerConfig) {
    this.#kind = kind;
    this.config = config;
    this.workerId = resolveWorkerId(config.env);
    this.#log = new Logger({
      level: config.logLevel,
      sink: config.logSink,
      fields: { worker: this.workerId, ...kind.labels },
    });
    this.#lifecycle = new Lifecycle(this.workerId, (from, to) => {
      this.#log.debug("worker state changed", { from, to });
    });
    this.#done = new Promise((resolve) => this.#resolveDone = resolve);
  }

  get state(): WorkerState {
    return this.#lifecycle.state;
  }

  /** Resolves when the worker has stopped (never rejects). */
  get done(): Promise<void> {
    return this.#done;
  }

  /** The poller's counters (tests and diagnostics). */
  get pollStats(): { reads: number; longPolls: number; idleWaits: number; messagesRead: number } {
    const poller = this.#poller;
    return {
      reads: poller?.reads ?? 0,
      longPolls: poller?.longPolls ?? 0,
      idleWaits: poller?.idleWaits ?? 0,
      messagesRead: poller?.messagesRead ?? 0,
    };
  }

  status(): WorkerStatus {
    return {
      workerId: this.workerId,
      state: this.state,
      ...this.#kind.labels,
      functionName: this.#functionName,
      inFlight: this.#executor?.running ?? 0,
      tasksCompleted: this.#stats.completed,
      tasksFailed: this.#stats.failed,
      ...(this.#error ? { error: this.#error.message } : {}),
    };
  }

  /**
   * Starts the worker; resolves once it is running (or once a stop() during the start has
   * stopped it), rejects when it cannot start (the worker is then stopped, and `status().error`
   * says why). Calling it again returns the same promise; a worker that stopped without
   * starting cannot be started (WorkerStateError).
   */
  start(functionName?: string): Promise<void> {
    if (this.#starting) return this.#starting;
    this.#lifecycle.go("starting");
    this.#functionName = this.config.functionName ?? functionName ??
      (this.#kind.labels.flow ?? this.#kind.labels.queue);
    this.#starting = this.#boot();
    return this.#starting;
  }

  /**
   * Stops gracefully (see the module comment); resolves once stopped. Safe to call at any time
   * and more than once. During a start, the start is cut short at its next step.
   */
  stop(reason = "stop() called"): Promise<void> {
    switch (this.state) {
      case "created":
        this.#lifecycle.go("stopped");
        this.#resolveDone();
        break;
      case "starting":
        this.#stopRequested ??= reason;
        break;
      case "running":
      case "deprecated":
        this.#stopping ??= this.#stop(reason);
        break;
    }
    return this.#done;
  }

  async #boot(): Promise<void> {
    const started = performance.now();
    const log = this.#log;
    this.#unsubscribePlatform = onPlatformShutdown((reason) => {
      if (wantsSuccessor(reason) && this.#functionName) {
        // Started before stopping, so the successor boots while this one drains; the stop
        // waits for the request, so the isolate is not ended before it has been sent.
        this.#successor ??= requestSuccessor({
          env: this.config.env,
          functionName: this.#functionName,
          log: this.#log,
        });
      }
      return this.stop(reason);
    });
    try {
      const config = this.config;
      const connection = resolveConnection({
        sql: config.sql,
        connectionString: config.connectionString,
        env: config.env,
        maxPgConnections: config.maxPgConnections,
        applicationName: `edgeflow worker ${this.#kind.queueName}`,
      });
      this.#connection = connection;
      const sql = connection.sql;
      log.debug("connecting", { connection: connection.source });

      await this.#kind.prepare(sql, log);
      this.#checkStop();
      const functionName = this.#functionName!;
      await registerWorker(sql, {
        workerId: this.workerId,
        queueName: this.#kind.queueName,
        functionName,
      });
      this.#registered = true;
      // The pool has fetched the array types by now: reconnections need not (see there).
      keepArrayTypes(sql);
      this.#checkStop();
      // With LISTEN an idle worker waits for notifications; without, it long-polls on a
      // connection of its own (a pool, so that it reconnects after an outage).
      const wakeups = await setUpWakeups({
        sql,
        queueName: this.#kind.queueName,
        mode: config.listen,
        announced: this.#kind.announced,
        onWake: () => this.#poller?.wake(),
        log,
      });
      this.#wakeups = wakeups;
      this.#checkStop();
      const idleMode: IdleMode = wakeups.listening ? "listen" : "long-poll";
      if (idleMode === "long-poll") this.#longPollSql = companionPool(sql);
      log.info(wakeups.listening ? "LISTENing for wake-ups" : "long-polling: no LISTEN", {
        listen: String(config.listen),
        why: wakeups.reason,
      });

      const executor = new Executor(config.maxConcurrent, {
        onFree: () => this.#poller?.nudge(),
        // A finished flow task may have made its dependents ready. With LISTEN the SQL core's
        // notification says so (and only then); without it, poll once to find out. A failed
        // task may come back after a retry delay shorter than the idle wait: look again.
        onTaskDone: (ok) => {
          if (this.#kind.wakeOnSettle && !wakeups.listening) this.#poller?.wake();
          else if (!ok) this.#poller?.recheck();
        },
        onError: (error) => log.error("task bookkeeping failed", { error: errorText(error) }),
      });
      this.#executor = executor;
      // With LISTEN, checked on each notification and after each reconnection of the listening
      // connection (when one may have been missed); without, every heartbeat interval.
      const cancellations = new RunCancellations({
        sql,
        intervalMs: config.heartbeatIntervalMs,
        log,
      });
      this.#cancellations = cancellations;
      if (this.#kind.announced) {
        this.#cancellationsListened = await wakeups.listenAlso(
          cancelChannel(this.#kind.queueName),
          () => void cancellations.check(),
        );
        this.#checkStop();
      }
      const runtime: WorkerRuntime = {
        workerId: this.workerId,
        sql,
        log,
        executor,
        config,
        stats: this.#stats,
        cancellations,
        closing: this.#closing.signal,
        context: this.#context = await sharedContext({
          env: config.env,
          sql,
          shutdownSignal: this.#shutdown.signal,
          workerConfig: this.#publicConfig(functionName),
        }),
      };
      const attached = this.#kind.attach(runtime);
      const poller = new Poller({
        sql,
        longPollSql: this.#longPollSql,
        idleMode,
        queueName: this.#kind.queueName,
        visibilityTimeout: config.visibilityTimeout,
        batchSize: config.batchSize,
        maxPollSeconds: config.maxPollSeconds,
        pollIntervalMs: config.pollIntervalMs,
        executor,
        dispatch: (messages) => attached.dispatch(messages),
        readNow: attached.readNow && ((qty) => attached.readNow!(qty)),
        longPollNow: attached.longPollNow &&
          ((longPollSql, qty) => attached.longPollNow!(longPollSql, qty)),
        log,
      });
      this.#poller = poller;
      this.#heartbeat = new Heartbeat({
        sql,
        workerId: this.workerId,
        queueName: this.#kind.queueName,
        functionName,
        intervalMs: config.heartbeatIntervalMs,
        log,
        onDeprecated: () => this.#deprecated(),
      });
      if (this.#kind.recoverStalledTasks) {
        this.#recovery = new StalledTaskRecovery({
          sql,
          flowSlug: this.#kind.queueName,
          intervalMs: config.recoveryIntervalMs,
          log,
          onRequeued: () => poller.wake(),
        });
      }

      this.#lifecycle.go("running");
      poller.start();
      this.#heartbeat.start();
      this.#recovery?.start();
      if (this.#kind.announced && !this.#cancellationsListened) cancellations.start();
      log.info("worker started", {
        function: functionName,
        connection: connection.source,
        idle: idleMode,
        maxConcurrent: config.maxConcurrent,
        durationMs: performance.now() - started,
      });
    } catch (error) {
      if (error instanceof StopDuringStart) {
        this.#lifecycle.go("stopping");
        log.info("worker stopping before it started", { reason: this.#stopRequested });
        await this.#teardown();
        this.#lifecycle.go("stopped");
        this.#resolveDone();
        return;
      }
      this.#error = error instanceof Error ? error : new Error(String(error));
      log.error("worker failed to start", { error: this.#error.message });
      await this.#teardown();
      this.#lifecycle.go("stopped");
      this.#resolveDone();
      throw error;
    }
  }

  #checkStop(): void {
    if (this.#stopRequested !== undefined) throw new StopDuringStart();
  }

  #deprecated(): void {
    if (!this.#lifecycle.is("running")) return;
    this.#lifecycle.go("deprecated");
    this.stop("deprecated");
  }

  async #stop(reason: string): Promise<void> {
    const started = performance.now();
    const log = this.#log;
    this.#lifecycle.go("stopping");
    log.info("worker stopping", { reason, inFlight: this.#executor?.running ?? 0 });
    this.#shutdown.abort(reason);
    await this.#poller?.stop();
    const abandoned = await this.#executor?.drain(this.config.shutdownGraceMs) ?? 0;
    if (abandoned > 0) {
      log.warn("handlers still running after the shutdown grace time were aborted", {
        count: abandoned,
        shutdownGraceMs: this.config.shutdownGraceMs,
      });
    }
    await this.#teardown();
    this.#lifecycle.go("stopped");
    log.info("worker stopped", { reason, durationMs: performance.now() - started });
    this.#resolveDone();
  }

  /** Releases everything startup acquired, in reverse order; the pool goes last. */
  async #teardown(): Promise<void> {
    const log = this.#log;
    await this.#heartbeat?.stop();
    await this.#recovery?.stop();
    await this.#cancellations?.stop();
    await this.#wakeups?.close();
    await this.#longPollSql?.end({ timeout: 1 }).catch(() => {});
    // Reports still retrying give up now (their tasks are recovered after their timeout).
    this.#closing.abort();
    await this.#context?.close();
    const connection = this.#connection;
    if (connection && this.#registered) {
      await markWorkerStopped(connection.sql, this.workerId).catch((error) =>
        log.warn("could not mark the worker stopped", { error: errorText(error) })
      );
    }
    this.#unsubscribePlatform?.();
    if (connection?.owned) {
      await connection.sql.end({ timeout: 5 }).catch(() => {});
    }
    await this.#successor;
  }

  /** `context.workerConfig`: the resolved options, without secrets or live objects. */
  #publicConfig(functionName: string): Readonly<Record<string, unknown>> {
    const { sql: _sql, connectionString: _url, env: _env, logSink: _sink, ...rest } = this.config;
    return Object.freeze({
      ...rest,
      workerId: this.workerId,
      functionName,
      ...this.#kind.labels,
    });
  }
}
