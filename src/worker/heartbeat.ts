/**
 * The heartbeat: on its own timer, independent of polling and handlers, it tells the database
 * the worker is alive (`pgflow.worker_heartbeat`) and learns whether the worker was deprecated
 * (`pgflow.deprecate_workers`), in which case it stops taking work and shuts down.
 */
import type { Sql } from "../db/connect.ts";
import { registerWorker, workerHeartbeat } from "../db/workers.ts";
import type { Logger } from "./logger.ts";
import { errorText } from "./failure_message.ts";
import { Ticker } from "./ticker.ts";

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
  #deprecated = false;
  beats = 0;

  constructor(options: HeartbeatOptions) {
    this.#o = options;
    this.#ticker = new Ticker(options.intervalMs, () => this.beat());
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
      const deprecated = await workerHeartbeat(sql, workerId);
      this.beats++;
      if (deprecated && !this.#deprecated) {
        this.#deprecated = true;
        log.info("worker deprecated: stops taking work and shuts down");
        this.#o.onDeprecated();
      }
    } catch (error) {
      // Registration lost (e.g. pruned while the worker was silent): register again.
      if ((error as { code?: string }).code === "P0002") {
        log.warn("worker was not registered any more; registering again");
        await registerWorker(sql, {
          workerId,
          queueName: this.#o.queueName,
          functionName: this.#o.functionName,
        }).catch((again) => log.error("re-registering failed", { error: errorText(again) }));
        return;
      }
      log.warn("heartbeat failed", { error: errorText(error) });
    }
  }
}
