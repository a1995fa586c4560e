/**
 * Group commit for completions. A completion is sent at once while fewer than `maxInFlight`
 * completion statements are running (an idle worker adds no latency); otherwise it waits for
 * the next free statement and goes with everything else that queued meanwhile, in one
 * statement and one transaction (`completeTasks`). Under load this turns many small commits
 * into a few larger ones.
 */
import type { Sql } from "../db/connect.ts";
import { completeTasks, type CompletionResult, type TaskCompletion } from "../db/tasks.ts";
import { withReportRetries } from "./report_retry.ts";

interface Pending {
  completion: TaskCompletion;
  resolve(result: CompletionResult): void;
  reject(error: unknown): void;
}

export class CompletionBatcher {
  readonly #sql: Sql;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #inFlight = 0;
  #queue: Pending[] = [];
  /** Statements sent and completions reported (diagnostics). */
  statements = 0;
  completions = 0;

  constructor(sql: Sql, options: { maxInFlight: number; maxBatch: number }) {
    this.#sql = sql;
    this.#maxInFlight = Math.max(1, options.maxInFlight);
    this.#maxBatch = Math.max(1, options.maxBatch);
  }

  /** Reports one completion; resolves with the task's status after it, rejects if it failed. */
  complete(completion: TaskCompletion): Promise<CompletionResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ completion, resolve, reject });
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      this.#inFlight++;
      this.#send(batch).finally(() => {
        this.#inFlight--;
        this.#flush();
      });
    }
  }

  async #send(batch: Pending[]): Promise<void> {
    this.statements++;
    try {
      const results = await withReportRetries(() =>
        completeTasks(this.#sql, batch.map((pending) => pending.completion))
      );
      this.completions += batch.length;
      batch.forEach((pending, index) => pending.resolve(results[index]));
    } catch (error) {
      if (batch.length === 1) {
        batch[0].reject(error);
        return;
      }
      // One bad completion must not sink the others: the batch rolled back, so send each alone.
      await Promise.all(batch.map(async (pending) => {
        try {
          const [result] = await withReportRetries(() =>
            completeTasks(this.#sql, [pending.completion])
          );
          pending.resolve(result);
        } catch (single) {
          pending.reject(single);
        }
      }));
    }
  }
}
