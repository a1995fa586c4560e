/**
 * Periodic recovery: fails (and so retries) tasks still `started` past their step's timeout,
 * whose worker vanished without reporting (`pgflow.requeue_stalled_tasks`). The SQL core also
 * recovers such a task when its message reappears; this makes it happen on time.
 */
import type { Sql } from "../db/connect.ts";
import { requeueStalledTasks } from "../db/maintenance.ts";
import type { Logger } from "./logger.ts";
import { errorText } from "./failure_message.ts";
import { Ticker } from "./ticker.ts";

export class StalledTaskRecovery {
  readonly #ticker: Ticker | undefined;

  constructor(
    options: { sql: Sql; flowSlug: string; intervalMs: number; log: Logger; onRequeued(): void },
  ) {
    if (options.intervalMs <= 0) return;
    const { sql, flowSlug, log } = options;
    this.#ticker = new Ticker(options.intervalMs, async () => {
      try {
        const count = await requeueStalledTasks(sql, flowSlug);
        if (count > 0) {
          log.warn("failed stalled tasks whose worker stopped reporting", { count });
          options.onRequeued();
        }
      } catch (error) {
        log.warn("stalled task recovery failed", { error: errorText(error) });
      }
    });
  }

  start(): void {
    this.#ticker?.start();
  }

  stop(): Promise<void> {
    return this.#ticker?.stop() ?? Promise.resolve();
  }
}
