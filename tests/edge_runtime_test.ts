/**
 * The local edge runtime (src/dev/edge_runtime): routing, env and SB_EXECUTION_ID,
 * EdgeRuntime.waitUntil, retirement, beforeunload reasons, 546 at the wall-clock limit, boot
 * failures, shutdown, and `deno task serve` with sandboxed isolates. Fixture functions live in
 * tests/fixtures/functions/. No database needed. Waits poll with a deadline.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type EdgeRuntime,
  type EdgeRuntimeOptions,
  type LifecycleEvent,
  startEdgeRuntime,
} from "../src/dev/edge_runtime/mod.ts";
import { parseEnv } from "../src/dev/edge_runtime/env_file.ts";
import { stopRuntime } from "./_support/edge_runtime.ts";
import { eventually } from "./_support/eventually.ts";

const FIXTURES = new URL("./fixtures/functions/", import.meta.url);
const REPO = new URL("../", import.meta.url);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Json = Record<string, unknown>;

async function withRuntime(
  options: Partial<EdgeRuntimeOptions>,
  body: (runtime: EdgeRuntime, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "edge-runtime-test-" });
  const runtime = await startEdgeRuntime({
    functionsDir: FIXTURES,
    earlyDropMs: Infinity,
    // A loaded machine can take many seconds to load a function's modules.
    bootTimeoutMs: 60_000,
    ...options,
    env: { EDGE_TEST_DIR: dir, ...options.env },
  });
  try {
    await body(runtime, dir);
  } finally {
    await stopRuntime(runtime);
    await Deno.remove(dir, { recursive: true });
  }
}

async function json(response: Response): Promise<Json> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`expected JSON, got ${response.status}: ${text}`);
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

function eventsOf(runtime: EdgeRuntime, instance: string): LifecycleEvent[] {
  return runtime.events.filter((event) => event.instance === instance);
}

function findEvent(runtime: EdgeRuntime, instance: string, type: string): LifecycleEvent {
  const event = eventsOf(runtime, instance).find((e) => e.type === type);
  assert.ok(
    event,
    `no ${type} event for ${instance}: ${JSON.stringify(eventsOf(runtime, instance))}`,
  );
  return event;
}

Deno.test("routes /functions/v1/<name>[/...] to the function; unknown functions get 404", async () => {
  await withRuntime({}, async (runtime) => {
    const response = await fetch(`${runtime.url}/functions/v1/echo/sub/path?x=1`, {
      method: "POST",
      headers: { "x-test": "header value" },
      body: "hello",
    });
    assert.equal(response.status, 200);
    const seen = await json(response);
    assert.deepEqual(
      [seen.method, seen.path, seen.search, seen.header, seen.body],
      ["POST", "/echo/sub/path", "?x=1", "header value", "hello"],
    );

    const viaInvoke = await json(await runtime.invoke("echo"));
    assert.deepEqual([viaInvoke.method, viaInvoke.path], ["GET", "/echo"]);

    const unknown = await runtime.invoke("nope", { method: "POST" });
    assert.equal(unknown.status, 404);
    assert.match(String((await json(unknown)).message), /function "nope" not found/);
    for (const path of ["/elsewhere", "/functions/v1/", "/functions/v1/_shared"]) {
      const response = await fetch(`${runtime.url}${path}`);
      assert.equal(response.status, 404, path);
      await response.body?.cancel();
    }

    const odd = await runtime.invoke("echo", { method: "PROPFIND" });
    assert.equal(odd.status, 405);
    assert.match(String((await json(odd)).message), /PROPFIND/);

    const defaultExport = await runtime.invoke("default_export/x");
    assert.equal(await defaultExport.text(), "default export saw /default_export/x");
  });
});

Deno.test("env reaches the instance; SB_EXECUTION_ID is per instance and changes after retirement", async () => {
  const wallClockMs = 1_500;
  await withRuntime(
    { wallClockMs, env: { EDGE_TEST_GREETING: "hello from env" } },
    async (runtime) => {
      const first = await json(await runtime.invoke("echo"));
      const second = await json(await runtime.invoke("echo"));
      assert.match(String(first.executionId), UUID);
      assert.equal(second.executionId, first.executionId);
      assert.deepEqual(runtime.instances("echo").map((i) => [i.id, i.state]), [
        [first.executionId, "running"],
      ]);
      assert.deepEqual(
        [first.greeting, first.processGreeting, first.home],
        ["hello from env", "hello from env", null], // only the configured env, not the runtime's
      );

      // Retired at half the limit; idle, so dropped at once; the next request boots anew.
      await eventually(
        "the first instance to go",
        () => runtime.instances("echo").every((i) => i.id !== first.executionId),
      );
      const third = await json(await runtime.invoke("echo"));
      assert.match(String(third.executionId), UUID);
      assert.notEqual(third.executionId, first.executionId);
      assert.ok(findEvent(runtime, String(first.executionId), "retire"));
    },
  );
});

Deno.test("EdgeRuntime.waitUntil work completes after the response", async () => {
  await withRuntime({}, async (runtime, dir) => {
    const file = join(dir, "background.txt");
    const response = await runtime.invoke("background", {
      method: "POST",
      body: JSON.stringify({ file, ms: 300 }),
    });
    assert.equal(response.status, 202);
    const { executionId } = await json(response);
    assert.equal(await readIfExists(file), undefined, "the response came before the work");
    assert.equal(runtime.instances("background")[0].pendingWaitUntil, 1);
    assert.equal(await eventually("the background write", () => readIfExists(file)), executionId);
    await eventually(
      "waitUntil to settle",
      () => runtime.instances("background")[0].pendingWaitUntil === 0,
    );
  });
});

Deno.test("retired at half the limit: new requests go to a new instance, the old one keeps working", async () => {
  // The old instance's work (3.3 s) outlives retirement (at 3 s) with room to spare before the kill.
  const wallClockMs = 6_000;
  await withRuntime({ wallClockMs }, async (runtime, dir) => {
    const oldFile = join(dir, "old.txt");
    const old = await json(
      await runtime.invoke("background", {
        method: "POST",
        body: JSON.stringify({ file: oldFile, ms: 3_300 }),
      }),
    );
    const oldId = String(old.executionId);
    await eventually(
      "retirement",
      () => runtime.instances("background").find((i) => i.id === oldId)?.state === "retiring",
    );
    const retiredAt = findEvent(runtime, oldId, "retire").at;
    const started = runtime.instances("background")[0].startedAt.getTime();
    assert.ok(
      retiredAt - started >= wallClockMs / 2 - 20,
      `retired after ${retiredAt - started} ms`,
    );

    const fresh = await json(
      await runtime.invoke("background", {
        method: "POST",
        body: JSON.stringify({ file: join(dir, "new.txt"), ms: 10 }),
      }),
    );
    assert.notEqual(fresh.executionId, oldId);
    assert.deepEqual(
      runtime.instances("background").map((i) => [i.id, i.state]),
      [[oldId, "retiring"], [fresh.executionId, "running"]],
    );

    // The retired instance finishes its background work, then (idle) is dropped early.
    assert.equal(await eventually("the old instance's write", () => readIfExists(oldFile)), oldId);
    await eventually(
      "the old instance to go",
      () => runtime.instances("background").every((i) => i.id !== oldId),
    );
    const end = findEvent(runtime, oldId, "terminate");
    assert.equal(end.reason, "early_drop");
    assert.ok(end.at - started < wallClockMs, "dropped before the wall-clock limit");
  });
});

Deno.test("beforeunload (wall_clock) fires before the kill; a request open at the kill gets 546", async () => {
  const wallClockMs = 2_000;
  await withRuntime({ wallClockMs }, async (runtime, dir) => {
    const held = await json(await runtime.invoke("lifecycle?hold=60000"));
    const heldId = String(held.executionId);
    const heldInfo = runtime.instances("lifecycle")[0];
    // The instance's own schedule, from its start: retire at 50%, beforeunload at 90%, kill at 100%.
    const origin = heldInfo.startedAt.getTime();
    assert.deepEqual(
      [heldInfo.retireAt, heldInfo.beforeUnloadAt, heldInfo.killAt].map((at) =>
        at.getTime() - origin
      ),
      [wallClockMs * 0.5, wallClockMs * 0.9, wallClockMs],
    );

    const hanging = runtime.invoke("hang", { method: "POST", body: "{}" });
    const hangInfo = await eventually("the hang instance", () => runtime.instances("hang")[0]);
    const hung = await hanging;
    assert.equal(hung.status, 546);
    const body = await json(hung);
    assert.deepEqual([body.code, body.reason, body.function], [
      "WORKER_LIMIT",
      "wall_clock",
      "hang",
    ]);
    assert.match(String(body.message), /wall-clock limit of 2000 ms/);
    // Answered by the kill at the limit (timers may run late under load, never early).
    const hangEnd = findEvent(runtime, hangInfo.id, "terminate");
    assert.equal(hangEnd.reason, "wall_clock");
    assert.match(String(hangEnd.detail), /reached; 1 open request answered 546$/);
    assert.ok(hangEnd.at >= hangInfo.killAt.getTime(), "the 546 came at the limit, not before");

    await eventually(
      "the held instance to be killed",
      () => runtime.instances("lifecycle").length === 0,
    );
    const unloadLog = await readIfExists(join(dir, `unload-${heldId}.txt`));
    assert.equal(unloadLog, "beforeunload:wall_clock\n"); // and never `unload`
    // Order, not milliseconds: the held work kept it alive past retirement; beforeunload came
    // first, then the kill at the deadline (not an early end when idle).
    assert.deepEqual(
      eventsOf(runtime, heldId).map((event) => [event.type, event.reason ?? ""]),
      [
        ["boot", ""],
        ["ready", ""],
        ["retire", ""],
        ["beforeunload", "wall_clock"],
        ["terminate", "wall_clock"],
      ],
    );
    const before = findEvent(runtime, heldId, "beforeunload");
    const kill = findEvent(runtime, heldId, "terminate");
    assert.equal(kill.detail, "wall-clock limit of 2000 ms reached");
    assert.equal(eventsOf(runtime, heldId)[0].at, origin, "the boot event marks the start");
    assert.ok(before.at >= heldInfo.beforeUnloadAt.getTime(), "beforeunload not before 90%");
    assert.ok(kill.at >= heldInfo.killAt.getTime(), "killed at the limit, not before");
  });
});

Deno.test("an idle instance is dropped early with beforeunload (early_drop)", async () => {
  await withRuntime({ earlyDropMs: 200 }, async (runtime, dir) => {
    const { executionId } = await json(await runtime.invoke("lifecycle"));
    await eventually("the early drop", () => runtime.instances("lifecycle").length === 0);
    assert.equal(
      await readIfExists(join(dir, `unload-${executionId}.txt`)),
      "beforeunload:early_drop\n",
    );
    assert.equal(findEvent(runtime, String(executionId), "terminate").reason, "early_drop");
  });
});

Deno.test("a function that fails to load answers 503 BOOT_ERROR naming it and the cause", async () => {
  // Generous enough for a healthy boot on a loaded machine; slow_boot takes a minute.
  await withRuntime({ bootTimeoutMs: 5_000 }, async (runtime) => {
    const cases: [string, RegExp][] = [
      ["broken", /function "broken" failed to start: Error: broken on purpose/],
      ["no_serve", /function "no_serve" failed to start: .*never called Deno\.serve/],
      ["slow_boot", /function "slow_boot" failed to start: .*within 5000 ms/],
    ];
    for (const [name, message] of cases) {
      const response = await runtime.invoke(name, { method: "POST" });
      assert.equal(response.status, 503, name);
      const body = await json(response);
      assert.equal(body.code, "BOOT_ERROR");
      assert.match(String(body.message), message);
      assert.deepEqual(runtime.instances(name), []);
    }

    // A handler that throws: 500 WORKER_ERROR, and the instance lives on.
    const { executionId } = await json(await runtime.invoke("echo"));
    const thrown = await runtime.invoke("echo/throw");
    assert.equal(thrown.status, 500);
    const error = await json(thrown);
    assert.equal(error.code, "WORKER_ERROR");
    assert.match(String(error.message), /function "echo" failed: Error: echo was asked to throw/);
    assert.equal((await json(await runtime.invoke("echo"))).executionId, executionId);
  });

  const dir = await Deno.makeTempDir({ prefix: "edge-runtime-syntax-" });
  await Deno.mkdir(join(dir, "syntax_error"));
  await Deno.writeTextFile(join(dir, "syntax_error", "index.ts"), "Deno.serve(() => {;\n");
  const runtime = await startEdgeRuntime({ functionsDir: dir });
  try {
    const response = await runtime.invoke("syntax_error");
    assert.equal(response.status, 503);
    assert.match(String((await json(response)).message), /function "syntax_error" failed to start/);
  } finally {
    await stopRuntime(runtime);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an uncaught error or Deno.exit ends the instance; its open requests get 500", async () => {
  await withRuntime({}, async (runtime) => {
    for (
      const [path, cause] of [["crash", /crash on purpose/], [
        "crash/exit",
        /Deno\.exit\(3\)/,
      ]] as const
    ) {
      const response = await runtime.invoke(path);
      assert.equal(response.status, 500, path);
      const body = await json(response);
      assert.equal(body.code, "WORKER_ERROR");
      assert.match(String(body.message), cause);
      assert.deepEqual(runtime.instances("crash"), []);
    }
    assert.equal(runtime.events.filter((e) => e.type === "crash").length, 2);
  });
});

Deno.test("stop() sends beforeunload (termination), lets work finish within the grace period, cleans up", async () => {
  await withRuntime({ terminationGraceMs: 1_000 }, async (runtime, dir) => {
    const held = await json(await runtime.invoke("lifecycle?hold=60000"));
    const file = join(dir, "finishing.txt");
    const finishing = await json(
      await runtime.invoke("background", {
        method: "POST",
        body: JSON.stringify({ file, ms: 200 }),
      }),
    );
    const stopStarted = Date.now();
    await stopRuntime(runtime);
    const took = Date.now() - stopStarted;

    assert.equal(
      await readIfExists(join(dir, `unload-${held.executionId}.txt`)),
      "beforeunload:termination\n",
    );
    assert.equal(await readIfExists(file), finishing.executionId, "background work finished");
    assert.deepEqual([runtime.instances("lifecycle"), runtime.instances("background")], [[], []]);
    const heldEnd = findEvent(runtime, String(held.executionId), "terminate");
    const finishedEnd = findEvent(runtime, String(finishing.executionId), "terminate");
    assert.deepEqual([heldEnd.reason, finishedEnd.reason], ["termination", "termination"]);
    assert.match(String(heldEnd.detail), /grace period over/);
    assert.match(String(finishedEnd.detail), /idle after beforeunload/);
    assert.ok(took >= 900 && took < 5_000, `stop took ${took} ms`);

    const late = await runtime.invoke("echo");
    assert.equal(late.status, 503);
    await late.body?.cancel();
    await assert.rejects(() => fetch(`${runtime.url}/functions/v1/echo`), TypeError);
  });
});

Deno.test("deno task serve: .env, lifecycle log lines, sandboxed isolates, SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "edge-runtime-serve-" });
  for (const name of ["echo", "sandbox"]) {
    await Deno.mkdir(join(dir, name));
    await Deno.copyFile(new URL(`${name}/index.ts`, FIXTURES), join(dir, name, "index.ts"));
  }
  await Deno.writeTextFile(join(dir, ".env"), "# secrets\nEDGE_TEST_GREETING='from .env'\n");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-worker-options",
      "src/dev/serve_main.ts",
      "--functions-dir",
      dir,
      "--port",
      "0",
      "--sandbox",
      "--termination-grace-ms",
      "1000",
    ],
    cwd: REPO.pathname,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let output = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) output += chunk;
  })();
  try {
    const url = await eventually(
      "the listening line",
      () => /listening on (http:\/\/\S+)/.exec(output)?.[1],
      15_000,
    );
    const echo = await json(await fetch(`${url}/functions/v1/echo`));
    assert.equal(echo.greeting, "from .env");
    const sandbox = await json(await fetch(`${url}/functions/v1/sandbox`));
    assert.deepEqual(sandbox, {
      run: "denied",
      writeTmp: "allowed",
      writeOutsideTmp: "denied",
      read: "allowed",
    });
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await reading;
    await Deno.remove(dir, { recursive: true });
    assert.equal(status.code, 0, output);
  }
  assert.match(output, / echo [0-9a-f]{8} boot\n/);
  assert.match(output, / echo [0-9a-f]{8} ready: booted in \d+ ms\n/);
  assert.match(output, / sandbox [0-9a-f]{8} terminate termination: idle after beforeunload\n/);
});

Deno.test("parseEnv reads supabase/functions/.env syntax", () => {
  const text = [
    "# a comment",
    "",
    "PLAIN=value # trailing comment",
    "export EXPORTED=yes",
    "SINGLE='kept # as is'",
    'DOUBLE="line one\\nline two \\"quoted\\""',
    'MULTI="first',
    'second"',
    "EMPTY=",
  ].join("\n");
  assert.deepEqual(parseEnv(text), {
    PLAIN: "value",
    EXPORTED: "yes",
    SINGLE: "kept # as is",
    DOUBLE: 'line one\nline two "quoted"',
    MULTI: "first\nsecond",
    EMPTY: "",
  });
  assert.throws(() => parseEnv("not a line"), /line 1: expected KEY=value/);
});
