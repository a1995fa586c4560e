/**
 * A plain pgmq queue worker: `createWorker(handler, { queueName })`. Each message's payload goes
 * to the handler; success archives the message; failure retries it after the retry policy's
 * delay (`pgmq.set_vt`), until the policy's limit, after which the message is archived and the
 * failure logged at error level. `read_ct` is the attempt number (`context.attempt`). A handler that runs past the
 * visibility timeout is aborted and counts as failed (its message would reappear anyway).
 */
import type { Sql } from "../db/connect.ts";
import { archiveMessage, delayMessage, ensureQueue } from "../db/queue.ts";
import type { Json, QueueMessage } from "../db/types.ts";
import { type QueueContext, queueContext } from "./context.ts";
import type { Job } from "./executor.ts";
import { errorText } from "./failure_message.ts";
import type { Logger } from "./logger.ts";
import type { ResolvedRetryPolicy, WorkerConfig } from "./options.ts";
import { withReportRetries } from "./report_retry.ts";
import type { WorkerKind, WorkerRuntime } from "./worker.ts";

/** A queue worker's handler: the message payload and the context; its return value is unused. */
export type QueueHandler<TPayload = Json> = (
  payload: TPayload,
  context: QueueContext<TPayload>,
) => unknown;

export function queueWorkerKind<TPayload>(
  handler: QueueHandler<TPayload>,
  config: WorkerConfig,
): WorkerKind {
  const queueName = config.queueName!;
  return {
    queueName,
    labels: { queue: queueName },
    announced: false,
    wakeOnSettle: false,
    recoverStalledTasks: false,
    prepare: async (sql: Sql, log: Logger) => {
      await ensureQueue(sql, queueName);
      log.debug("queue ready");
    },
    attach: (runtime) => ({
      dispatch(messages) {
        for (const message of messages) {
          runtime.executor.execute(
            messageJob(handler, runtime, queueName, message as QueueMessage<TPayload>),
          );
        }
      },
    }),
  };
}

/** Seconds before retry number `attempt` (1 = the first retry). */
export function retryDelay(policy: ResolvedRetryPolicy, attempt: number): number {
  if (policy.strategy === "fixed") return policy.baseDelay;
  return Math.min(policy.maxDelay, policy.baseDelay * 2 ** (attempt - 1));
}

function messageJob<TPayload>(
  handler: QueueHandler<TPayload>,
  runtime: WorkerRuntime,
  queueName: string,
  message: QueueMessage<TPayload>,
): Job {
  const { sql, stats, config } = runtime;
  const retry = config.retry!;
  const log = runtime.log.child({ msg_id: message.msg_id, attempt: message.read_ct });
  return {
    what: `message ${message.msg_id} of queue "${queueName}"`,
    timeoutMs: config.visibilityTimeout * 1000,
    run(signal) {
      return handler(message.message, queueContext(runtime.context, message, signal));
    },
    async report(outcome) {
      try {
        if (outcome.ok) {
          await withReportRetries(
            () => archiveMessage(sql, queueName, message.msg_id),
            { log, what: "the processed message", signal: runtime.closing },
          );
          stats.completed++;
          log.info("message processed; archived", { durationMs: outcome.durationMs });
          return;
        }
        stats.failed++;
        const error = errorText(outcome.error);
        if (message.read_ct > retry.limit) {
          await withReportRetries(
            () => archiveMessage(sql, queueName, message.msg_id),
            { log, what: "the failed message", signal: runtime.closing },
          );
          log.error("message failed and has no retries left; archived", {
            error,
            retryLimit: retry.limit,
            durationMs: outcome.durationMs,
          });
          return;
        }
        const delay = retryDelay(retry, message.read_ct);
        await withReportRetries(
          () => delayMessage(sql, queueName, message.msg_id, delay),
          { log, what: "the failed message", signal: runtime.closing },
        );
        log.warn("message failed; will be retried", {
          error,
          retryInSeconds: delay,
          durationMs: outcome.durationMs,
        });
      } catch (error) {
        log.error("could not settle the message; it reappears after its visibility timeout", {
          error: errorText(error),
        });
      }
    },
    late(result) {
      log.warn("handler settled after its message had timed out; result ignored", {
        ok: result.ok,
        durationMs: result.durationMs,
      });
    },
  };
}
