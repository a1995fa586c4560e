/** Option validation (every error names its option) and the worker's small pure parts. */
import assert from "node:assert/strict";
import { Flow } from "../src/dsl/mod.ts";
import { createWorker, functionNameFromUrl } from "../src/worker/create_worker.ts";
import { firstSecretKey } from "../src/worker/context.ts";
import { WorkerOptionError } from "../src/worker/errors.ts";
import { failureMessage, failureStack } from "../src/worker/failure_message.ts";
import { plainLine, prettyLine } from "../src/worker/logger.ts";
import {
  FLOW_WORKER_DEFAULTS,
  QUEUE_WORKER_DEFAULTS,
  resolveFlowWorkerOptions,
} from "../src/worker/options.ts";
import { retryDelay } from "../src/worker/queue_worker.ts";
import { serializeOutput } from "../src/worker/task_output.ts";
import { wantsSuccessor } from "../src/worker/successor.ts";

const flow = new Flow({ slug: "opts" }).step({ slug: "a" }, () => 1);
const url = "postgres://u:p@127.0.0.1:5432/db";

Deno.test("bad flow worker options fail fast, naming the option", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ maxConcurrent: 0 }, "maxConcurrent"],
    [{ maxConcurrent: 1.5 }, "maxConcurrent"],
    [{ batchSize: "10" }, "batchSize"],
    [{ maxPollSeconds: 0 }, "maxPollSeconds"],
    [{ pollIntervalMs: -1 }, "pollIntervalMs"],
    [{ visibilityTimeout: 0 }, "visibilityTimeout"],
    [{ heartbeatIntervalMs: 1 }, "heartbeatIntervalMs"],
    [{ maxPgConnections: 1 }, "maxPgConnections"],
    [{ shutdownGraceMs: -5 }, "shutdownGraceMs"],
    [{ recoveryIntervalMs: -1 }, "recoveryIntervalMs"],
    [{ recreateOnMismatch: "yes" }, "recreateOnMismatch"],
    [{ logLevel: "verbose" }, "logLevel"],
    [{ listen: "sometimes" }, "listen"],
    [{ connectionString: "mysql://x" }, "connectionString"],
    [{ connectionString: 5 }, "connectionString"],
    [{ sql: {} }, "sql"],
    [{ functionName: "" }, "functionName"],
    [{ env: "FOO=1" }, "env"],
    [{ env: { FOO: 1 } }, "env.FOO"],
    [{ logSink: "console" }, "logSink"],
    [{ maxConcurent: 5 }, "maxConcurent"],
    [{ queueName: "jobs" }, "queueName"],
    [{ retry: { strategy: "fixed", limit: 1, baseDelay: 1 } }, "retry"],
  ];
  for (const [options, option] of cases) {
    assert.throws(
      () => createWorker(flow, { connectionString: url, ...options }),
      (error: unknown) => {
        assert.ok(error instanceof WorkerOptionError, `${option}: ${error}`);
        assert.equal(error.option, option);
        assert.ok(error.message.startsWith(`createWorker: option ${option} `), error.message);
        return true;
      },
      option,
    );
  }
  assert.throws(
    () => createWorker(flow, { maxConcurent: 5 } as Record<string, unknown>),
    /option maxConcurent is not a known option \(did you mean maxConcurrent\?\)/,
  );
  assert.throws(
    () => createWorker(flow, { queueName: "q" } as Record<string, unknown>),
    /only applies to queue workers/,
  );
  assert.throws(
    () => createWorker(flow, "fast" as unknown as Record<string, unknown>),
    /createWorker: options must be an object/,
  );
  assert.throws(() => createWorker(new Flow({ slug: "empty" })), /flow "empty" has no steps/);
  assert.throws(
    () => createWorker(42 as unknown as typeof flow),
    /must be a Flow or a queue handler/,
  );
});

Deno.test("bad queue worker options fail fast, naming the option", () => {
  const handler = () => {};
  const cases: [Record<string, unknown>, string][] = [
    [{}, "queueName"],
    [{ queueName: "has space" }, "queueName"],
    [{ queueName: "1starts_with_digit" }, "queueName"],
    [{ queueName: "q", retry: "often" }, "retry"],
    [{ queueName: "q", retry: { strategy: "linear" } }, "retry.strategy"],
    [{ queueName: "q", retry: { strategy: "fixed", limit: -1 } }, "retry.limit"],
    [{ queueName: "q", retry: { strategy: "fixed", baseDelay: 1.5 } }, "retry.baseDelay"],
    [{ queueName: "q", retry: { strategy: "fixed", maxDelay: 10 } }, "retry.maxDelay"],
    [
      { queueName: "q", retry: { strategy: "exponential", baseDelay: 10, maxDelay: 5 } },
      "retry.maxDelay",
    ],
    [{ queueName: "q", recreateOnMismatch: true }, "recreateOnMismatch"],
    [{ queueName: "q", batchSize: 0 }, "batchSize"],
  ];
  for (const [options, option] of cases) {
    assert.throws(
      () =>
        createWorker(
          handler,
          { connectionString: url, ...options } as unknown as { queueName: string },
        ),
      (error: unknown) => error instanceof WorkerOptionError && error.option === option,
      option,
    );
  }
});

Deno.test("defaults are filled in", () => {
  const config = resolveFlowWorkerOptions({});
  assert.deepEqual(
    {
      maxConcurrent: config.maxConcurrent,
      batchSize: config.batchSize,
      maxPollSeconds: config.maxPollSeconds,
      pollIntervalMs: config.pollIntervalMs,
      visibilityTimeout: config.visibilityTimeout,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      maxPgConnections: config.maxPgConnections,
      shutdownGraceMs: config.shutdownGraceMs,
      recoveryIntervalMs: config.recoveryIntervalMs,
      listen: config.listen,
      recreateOnMismatch: config.recreateOnMismatch,
      logLevel: config.logLevel,
    },
    {
      maxConcurrent: 10,
      batchSize: 10,
      maxPollSeconds: 2,
      pollIntervalMs: 25,
      visibilityTimeout: 5,
      heartbeatIntervalMs: 5_000,
      maxPgConnections: 4,
      shutdownGraceMs: 10_000,
      recoveryIntervalMs: 30_000,
      listen: "auto",
      recreateOnMismatch: false,
      logLevel: "info",
    },
  );
  assert.equal(FLOW_WORKER_DEFAULTS.visibilityTimeout, 5);
  assert.equal(QUEUE_WORKER_DEFAULTS.visibilityTimeout, 60);
  assert.deepEqual(QUEUE_WORKER_DEFAULTS.retry, {
    strategy: "exponential",
    limit: 5,
    baseDelay: 3,
    maxDelay: 300,
  });
});

Deno.test("function name from the request path", () => {
  assert.equal(functionNameFromUrl("http://localhost/"), undefined);
  assert.equal(functionNameFromUrl("http://localhost/my-worker"), "my-worker");
  assert.equal(functionNameFromUrl("http://x.supabase.co/functions/v1/analyze/extra"), "analyze");
});

Deno.test("the secret key for supabase-js: JSON object, array, string, or CSV", () => {
  assert.equal(firstSecretKey(undefined), undefined);
  assert.equal(firstSecretKey('{"default":"sb_secret_a","other":"sb_secret_b"}'), "sb_secret_a");
  assert.equal(firstSecretKey('["sb_secret_a"]'), "sb_secret_a");
  assert.equal(firstSecretKey('"sb_secret_a"'), "sb_secret_a");
  assert.equal(firstSecretKey("sb_secret_a, sb_secret_b"), "sb_secret_a");
  assert.equal(firstSecretKey("default=sb_secret_a,other=sb_secret_b"), "sb_secret_a");
  assert.equal(firstSecretKey("default:sb_secret_a"), "sb_secret_a");
});

Deno.test("queue retry delays: fixed, or doubling up to maxDelay", () => {
  const fixed = { strategy: "fixed", limit: 3, baseDelay: 4 } as const;
  assert.deepEqual([1, 2, 3].map((n) => retryDelay(fixed, n)), [4, 4, 4]);
  const exponential = { strategy: "exponential", limit: 9, baseDelay: 3, maxDelay: 20 } as const;
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => retryDelay(exponential, n)), [3, 6, 12, 20, 20]);
});

Deno.test("outputs: JSON values pass (falsy included); functions, symbols, BigInt, cycles do not", () => {
  for (const value of [0, false, "", null, [], {}, { a: [1, "x", null] }]) {
    assert.equal(serializeOutput(value, "step s"), JSON.stringify(value));
  }
  assert.equal(serializeOutput({ a: undefined, b: 1 }, "step s"), '{"b":1}');
  assert.throws(
    () => serializeOutput(() => 1, "step s"),
    /step s returned a value that is not JSON: the value is a function/,
  );
  assert.throws(() => serializeOutput([Symbol("x")], "step s"), /the value at key "0" is a symbol/);
  assert.throws(() => serializeOutput(undefined, "step s"), /got undefined/);
  assert.throws(() => serializeOutput({ n: 1n }, "step s"), /not JSON: .*BigInt/i);
});

Deno.test("failure messages: the message for error_message, name and frames for the log", () => {
  const error = new TypeError("bad thing");
  assert.equal(failureMessage(error), "bad thing");
  const stack = failureStack(error)!;
  assert.match(stack, /^TypeError: bad thing\n {4}at /);
  assert.ok(stack.split("\n").length <= 9);
  assert.equal(failureStack("plain string"), undefined);
  assert.equal(failureMessage("plain string"), "plain string");
  assert.equal(failureMessage({ code: 7 }), 'non-Error value thrown: {"code":7}');
  assert.equal(failureMessage(new Error("y".repeat(3_000))).length, 2_000);
});

Deno.test("log lines: key=value when not a terminal, readable on one", () => {
  const fields = {
    worker: "0f3a9c1e-aaaa-bbbb-cccc-000000000000",
    flow: "f",
    step: "s",
    durationMs: 3.14159,
  };
  assert.equal(
    plainLine("info", "task completed", fields),
    'level=info msg="task completed" worker=0f3a9c1e-aaaa-bbbb-cccc-000000000000 flow=f step=s duration=3.1ms',
  );
  assert.equal(
    plainLine("warn", "x", { error: 'say "hi"' }),
    'level=warn msg=x error="say \\"hi\\""',
  );
  const pretty = prettyLine(new Date(2026, 0, 2, 3, 4, 5, 6), "error", "boom", fields);
  assert.ok(pretty.includes("03:04:05.006"));
  assert.ok(pretty.includes("ERROR"));
  assert.ok(pretty.includes("worker=0f3a9c1e "));
  assert.ok(pretty.includes("duration=3.1ms"));
});

Deno.test("EDGE_WORKER_LOG_LEVEL sets the level when the code does not", () => {
  const env = { EDGE_WORKER_LOG_LEVEL: "debug" };
  assert.equal(resolveFlowWorkerOptions({ connectionString: url, env }).logLevel, "debug");
  assert.equal(
    resolveFlowWorkerOptions({ connectionString: url, env, logLevel: "error" }).logLevel,
    "error",
    "the code's option wins",
  );
  assert.throws(
    () =>
      resolveFlowWorkerOptions({ connectionString: url, env: { EDGE_WORKER_LOG_LEVEL: "loud" } }),
    /logLevel \(from env EDGE_WORKER_LOG_LEVEL\).*must be one of error, warn, info, debug, got "loud"/,
  );
});

Deno.test("a worker asks for a successor only when the platform ends it for a limit", () => {
  for (const reason of ["wall_clock", "cpu", "memory", "early_drop"]) {
    assert.equal(wantsSuccessor(`beforeunload (${reason})`), true, reason);
  }
  for (const reason of ["beforeunload (termination)", "signal SIGTERM", "deprecated", "stop()"]) {
    assert.equal(wantsSuccessor(reason), false, reason);
  }
});
