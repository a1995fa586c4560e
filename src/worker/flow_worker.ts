/**
 * A flow worker: checks the flow's definition at startup, turns claimed messages into started
 * tasks (phase 2, `pgflow.start_tasks`), runs each step's handler with its input and context,
 * and reports the outcome with `complete_task` / `fail_task`.
 */
import { flowShape } from "../dsl/flow_shape.ts";
import type { Sql } from "../db/connect.ts";
import { ensureFlowCompiled } from "../db/definitions.ts";
import {
  failTask,
  readAndStartTasks,
  readAndStartTasksWithPoll,
  type StartedTask,
  startTasksWithAttempts,
} from "../db/tasks.ts";
import type { Json, QueueMessage, StepTaskRecord, TaskMessage } from "../db/types.ts";
import type { AnyFlow } from "../dsl/flow.ts";
import { CompletionBatcher } from "./completion_batcher.ts";
import { stepContext } from "./context.ts";
import { FlowMismatchError } from "./errors.ts";
import { expectCompiledFlow } from "./flow_expected.ts";
import type { Job, Outcome, ReportEnd } from "./executor.ts";
import { errorText, failureMessage, failureStack } from "./failure_message.ts";
import type { Logger } from "./logger.ts";
import type { WorkerConfig } from "./options.ts";
import { withReportRetries } from "./report_retry.ts";
import { serializeOutput } from "./task_output.ts";
import type { WorkerKind, WorkerRuntime } from "./worker.ts";

export function flowWorkerKind(flow: AnyFlow, config: WorkerConfig): WorkerKind {
  return {
    queueName: flow.slug,
    labels: { flow: flow.slug },
    announced: true,
    wakeOnSettle: true,
    recoverStalledTasks: true,
    prepare: (sql, log) =>
      config.compileOnStartup
        ? prepareFlow(flow, sql, log, config.recreateOnMismatch)
        : expectCompiledFlow(flow.slug, sql, log),
    attach(runtime) {
      const { config } = runtime;
      /** The last read or claim got all it asked for: more tasks are probably visible. */
      let backlogLikely = false;
      /** Runs tasks a read or a claim started (`asked`: how many it asked for). */
      const runStarted = (started: StartedTask[], asked: number) => {
        backlogLikely = started.length === asked;
        for (const { task, message, attempt } of started) {
          runtime.executor.execute(taskJob(flow, flowRuntime, task, message, attempt));
        }
      };
      const feedsOthers = new Set(
        flow.stepSlugs.flatMap((slug) => flow.getStep(slug)?.dependencies ?? []),
      );
      const reporter: CompletionBatcher = new CompletionBatcher(runtime.sql, {
        // At most two completion statements at a time (on different runs): one in flight while
        // the next batch gathers. More would split the batches (more commits, more statements);
        // fewer would leave finished tasks waiting while a statement runs.
        maxInFlight: Math.min(2, config.maxPgConnections - 1),
        maxBatch: Math.max(config.batchSize, 50),
        log: runtime.log,
        signal: runtime.closing,
        claimer: {
          flowSlug: flow.slug,
          workerId: runtime.workerId,
          vt: config.visibilityTimeout,
          take(completions) {
            if (runtime.context.shutdownSignal.aborted) return null;
            // Completions of leaf steps ready nothing; claiming then only pays for a read,
            // unless a backlog is likely: the last claim got all it asked for, or other
            // tasks are in flight.
            const readies = completions.some((c) => feedsOthers.has(c.stepSlug));
            const busy = runtime.executor.running > completions.length;
            if (!readies && !backlogLikely && !busy) return null;
            const slots = Math.min(runtime.executor.free, config.batchSize);
            if (slots > 0) runtime.executor.reserve(slots);
            return slots;
          },
          run: runStarted,
          release: (slots) => runtime.executor.release(slots),
        },
      });
      const flowRuntime = { ...runtime, reporter };
      /** Runs what a read or long poll claimed; gives back the slots it did not use. */
      const takeOver = async (claim: Promise<StartedTask[]>, qty: number) => {
        const started = await claim;
        runtime.executor.release(qty - started.length);
        runStarted(started, qty);
        return started.length;
      };
      const claim = {
        flowSlug: flow.slug,
        workerId: runtime.workerId,
        vt: config.visibilityTimeout,
      };
      return {
        dispatch: (messages) => dispatch(flow, flowRuntime, messages),
        readNow: (qty) => takeOver(readAndStartTasks(runtime.sql, { ...claim, qty }), qty),
        longPollNow(sql, qty) {
          const poll = readAndStartTasksWithPoll(sql, {
            ...claim,
            qty,
            maxPollSeconds: config.maxPollSeconds,
            pollIntervalMs: config.pollIntervalMs,
          });
          return { claimed: takeOver(poll.started, qty), cancel: poll.cancel };
        },
      };
    },
  };
}

/** Compiles the flow when missing, verifies it when present, refuses or recreates on a mismatch. */
async function prepareFlow(
  flow: AnyFlow,
  sql: Sql,
  log: Logger,
  recreateOnMismatch: boolean,
): Promise<void> {
  const result = await ensureFlowCompiled(sql, {
    flowSlug: flow.slug,
    shape: flowShape(flow),
    allowDataLoss: recreateOnMismatch,
  });
  switch (result.status) {
    case "compiled":
      log.info("flow was missing; compiled it into the database");
      return;
    case "verified":
      log.debug("flow definition matches the database");
      return;
    case "recompiled":
      log.warn(
        "flow differed; deleted it with all its runs and recreated it (recreateOnMismatch)",
        {
          differences: result.differences.join("; "),
        },
      );
      return;
    case "mismatch":
      throw new FlowMismatchError(flow.slug, result.differences);
  }
}

interface FlowRuntime extends WorkerRuntime {
  reporter: CompletionBatcher;
}

/** Phase 2 for messages the long poll claimed, then one job per started task. */
function dispatch(flow: AnyFlow, runtime: FlowRuntime, messages: QueueMessage<Json>[]): void {
  const { executor, sql, log, workerId } = runtime;
  executor.track((async () => {
    let tasks: { task: StepTaskRecord; attempt: number }[];
    try {
      tasks = await startTasksWithAttempts(sql, {
        flowSlug: flow.slug,
        msgIds: messages.map((message) => message.msg_id),
        workerId,
      });
    } catch (error) {
      log.error("start_tasks failed; the messages reappear after their visibility timeout", {
        count: messages.length,
        error: errorText(error),
      });
      executor.release(messages.length);
      return;
    }
    // Messages whose task was not started (run failed meanwhile, duplicate, stale) free their slot.
    executor.release(messages.length - tasks.length);
    const byId = new Map(messages.map((message) => [message.msg_id, message]));
    for (const { task, attempt } of tasks) {
      executor.execute(taskJob(flow, runtime, task, byId.get(Number(task.msg_id))!, attempt));
    }
  })());
}

function taskJob(
  flow: AnyFlow,
  runtime: FlowRuntime,
  task: StepTaskRecord,
  message: QueueMessage<Json> | QueueMessage<TaskMessage>,
  attempt: number,
): Job {
  const { sql, stats } = runtime;
  const step = flow.getStep(task.step_slug);
  const log = runtime.log.child({
    step: task.step_slug,
    run: task.run_id,
    task: task.task_index,
    attempt,
  });
  const key = { runId: task.run_id, stepSlug: task.step_slug, taskIndex: task.task_index };
  const what = `step "${task.step_slug}" of flow "${flow.slug}"`;
  const cancellation = runtime.cancellations.track(task.run_id);

  const fail = async (error: unknown, cause: string, durationMs: number, withStack: boolean) => {
    const errorMessage = failureMessage(error);
    try {
      const row = await withReportRetries(
        () => failTask(sql, { ...key, attempt, errorMessage }),
        { log, what: "the failed task", signal: runtime.closing },
      );
      stats.failed++;
      const willRetry = row?.status === "queued";
      log.warn(willRetry ? "task failed; will be retried" : "task failed", {
        cause,
        error: errorText(error),
        ...(withStack ? { stack: failureStack(error) } : {}),
        durationMs,
      });
    } catch (reportError) {
      log.error("could not report the failed task; the SQL core recovers it after its timeout", {
        error: errorText(reportError),
      });
    }
  };

  return {
    what,
    timeoutMs: (step?.options.timeout ?? flow.options.timeout) * 1000,
    signal: cancellation.signal,
    run(signal) {
      if (!step) {
        throw new Error(`${what} is not defined in this worker's code (a newer deployment?)`);
      }
      log.debug("task started");
      return step.handler(
        task.input,
        stepContext(runtime.context, task, message, attempt, signal),
      );
    },
    async report(outcome: Outcome): Promise<ReportEnd> {
      cancellation.done(); // the outcome is decided: nothing left to abort
      if (!outcome.ok && outcome.cause === "cancelled") {
        // The run's tasks are cancelled already; a report could only reach a task that a
        // resume_run has queued again since, for another attempt.
        log.info("task aborted: its run was cancelled; nothing to report", {
          durationMs: outcome.durationMs,
        });
        return;
      }
      if (!outcome.ok) {
        return fail(outcome.error, outcome.cause, outcome.durationMs, outcome.cause === "error");
      }
      let outputJson: string;
      try {
        outputJson = serializeOutput(outcome.output, what);
      } catch (error) {
        return fail(error, "output", outcome.durationMs, false);
      }
      try {
        const { result, slotHandedOver } = await runtime.reporter.complete({ ...key, outputJson });
        if (result.status === "completed") {
          stats.completed++;
          log.info("task completed", { durationMs: outcome.durationMs });
        } else {
          // The SQL core refused the output ([TYPE_VIOLATION]: a map's source must be an
          // array), or the task was no longer started (its run failed, or it was recovered
          // as stalled): nothing changed but what the core says.
          stats.failed++;
          log.warn("task was not completed", {
            status: result.status,
            error: result.error_message ?? undefined,
            durationMs: outcome.durationMs,
          });
        }
        if (slotHandedOver) return "slot-handed-over";
      } catch (error) {
        log.error(
          "could not report the completed task; the SQL core retries it after its timeout",
          {
            error: errorText(error),
          },
        );
      }
    },
    late(result) {
      log.warn("handler settled after its task had timed out or been given up; result ignored", {
        ok: result.ok,
        durationMs: result.durationMs,
      });
    },
  };
}
