/**
 * The heartbeat: on its own timer, independent of polling and handlers, it tells the database
 * the worker is alive (`pgflow.worker_heartbeat`) and learns whether the worker was deprecated
 * (`pgflow.deprecate_workers`), in which case it stops taking work and shuts down.
 *
 * A heartbeat that cannot get through fails within HEARTBEAT_TIMEOUT_MS at most (a query that
 * waits for a connection or a reply is cancelled), is logged once per episode, and is tried
 * again after RETRY_MS rather than a whole interval: the keep-alive job counts a worker dead
 * after 15 s without one, so it must resume as soon as the database is back.
 */
import type { Sql } from "../db/connect.ts";
import { registerWorker, workerHeartbeat } from "../db/workers.ts";
import type { Logger } from "./logger.ts";
import { errorText } from "./failure_message.ts";
import { FailureEpisode } from "./failure_episode.ts";
import { Ticker } from "./ticker.ts";

/** Longest a heartbeat may take before it counts as failed. */
export const HEARTBEAT_TIMEOUT_MS = 3_000;
/** Wait before the next try after a failed heartbeat (when shorter than the interval). */
export const RETRY_MS = 500;

export interface HeartbeatOptions {
  sql: Sql;
  workerId: string;
  queueName: string;
  functionName: string;
  intervalMs: number;
  log: Logger;
  onDeprecated(): void;
}

export class Heartbeat {
  readonly #o: HeartbeatOptions;
  readonly #ticker: Ticker;
  readonly #episode: FailureEpisode;
  #deprecated = false;

  constructor(options: HeartbeatOptions) {
    this.#o = options;
    this.#episode = new FailureEpisode(options.log, {
      failed: "heartbeat failed",
      recovered: "heartbeat recovered",
    });
    this.#ticker = new Ticker(
      () => this.#episode.failing ? Math.min(RETRY_MS, options.intervalMs) : options.intervalMs,
      () => this.beat(),
    );
  }

  start(): void {
    this.#ticker.start();
  }

  stop(): Promise<void> {
    return this.#ticker.stop();
  }

  /** One heartbeat; also callable directly. */
  async beat(): Promise<void> {
    const { sql, workerId, log } = this.#o;
    try {
      const deprecated = await workerHeartbeat(sql, workerId, {
        timeoutMs: Math.min(HEARTBEAT_TIMEOUT_MS, Math.max(this.#o.intervalMs, 1_000)),
      });
      this.#episode.succeeded();
      if (deprecated && !this.#deprecated) {
        this.#deprecated = true;
        log.info("worker deprecated: stops taking work and shuts down");
        this.#o.onDeprecated();
      }
    } catch (error) {
      // Registration lost (e.g. pruned while the worker was silent): register again.
      if ((error as { code?: string }).code === "P0002") {
        this.#episode.succeeded();
        log.warn("worker was not registered any more; registering again");
        await registerWorker(sql, {
          workerId,
          queueName: this.#o.queueName,
          functionName: this.#o.functionName,
        }).catch((again) => log.error("re-registering failed", { error: errorText(again) }));
        return;
      }
      this.#episode.failed(error);
    }
  }
}
