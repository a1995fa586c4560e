/**
 * The worker outside Edge Functions. Under Node: `deno task build:npm` builds the package from
 * the same source, and `node` runs a flow's worker from it (startWorker, DATABASE_URL) plus the
 * client, against the test database; SIGTERM then stops the worker gracefully (exit 143). Under
 * Deno: the same script on the source, stopped by SIGINT (exit 130).
 */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import ts from "typescript";
import { dbTest, type TestDb } from "./_support/db.ts";
import { waitForRun } from "./_support/worker.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SCRIPT = new URL("./_support/standalone_worker.mjs", import.meta.url).pathname;

async function nodeVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("node", { args: ["--version"], stdout: "piped" }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the script's JSON lines from a child's stdout; the worker's log lines go to `logs`. */
function jsonLines(stream: ReadableStream<Uint8Array>) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const logs: string[] = [];
  const line = async (): Promise<string> => {
    while (!buffer.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(`the output ended early:\n${[...logs, buffer].join("\n")}`);
      }
      buffer += value;
    }
    const end = buffer.indexOf("\n");
    const text = buffer.slice(0, end);
    buffer = buffer.slice(end + 1);
    return text;
  };
  return {
    logs,
    async next(): Promise<Record<string, unknown>> {
      while (true) {
        const text = await line();
        if (text.startsWith("{")) return JSON.parse(text);
        logs.push(text);
      }
    },
    /** Every line until the output ends. */
    async rest(): Promise<void> {
      try {
        while (true) logs.push(await line());
      } catch {
        // ended
      }
    },
    async close() {
      reader.releaseLock();
      await stream.cancel().catch(() => {});
    },
  };
}

dbTest("the npm package runs a worker and the client under Node; SIGTERM stops it", async (t) => {
  const version = await nodeVersion();
  const major = Number(/^v(\d+)/.exec(version ?? "")?.[1] ?? 0);
  if (major < 20) {
    // CI fails on any skip (see the test runner); say why it could not run.
    console.warn(`node_worker_test: needs Node 20+ on PATH, found ${version ?? "none"}`);
    throw new Error(`Node 20+ is required for this test, found ${version ?? "none"}`);
  }
  // Inside the repository, so `postgres` resolves from its node_modules.
  const outDir = await Deno.makeTempDir({ dir: `${ROOT}dist`, prefix: "npm-test-" }).catch(
    async () => {
      await Deno.mkdir(`${ROOT}dist`, { recursive: true });
      return await Deno.makeTempDir({ dir: `${ROOT}dist`, prefix: "npm-test-" });
    },
  );
  try {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}src/dev/build_npm_main.ts`, "--out", outDir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const pkg = JSON.parse(await Deno.readTextFile(`${outDir}/package.json`));
    assert.equal(pkg.type, "module");
    assert.deepEqual(Object.keys(pkg.dependencies).sort(), ["@supabase/supabase-js", "postgres"]);
    // The browser entry loads no database driver.
    const clientEntry = await Deno.readTextFile(`${outDir}/client.js`);
    assert.doesNotMatch(clientEntry, /from "postgres"/);
    assert.deepEqual(typeCheckConsumer(outDir), []);

    await exerciseStandaloneWorker(t, {
      command: "node",
      args: [SCRIPT, `${outDir}/index.js`],
      cwd: outDir,
      signal: "SIGTERM",
      exitCode: 143,
      denoGlobal: "undefined",
    });
  } finally {
    // A failed build leaves no folder: its own error is the one to report.
    await Deno.remove(outDir, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
});

dbTest("the same worker runs as a long-lived Deno process; SIGINT stops it", async (t) => {
  await exerciseStandaloneWorker(t, {
    command: Deno.execPath(),
    args: ["run", "-A", SCRIPT, new URL("../src/npm.ts", import.meta.url).href],
    cwd: ROOT,
    signal: "SIGINT",
    exitCode: 130,
    denoGlobal: "object",
  });
});

/**
 * Runs tests/_support/standalone_worker.mjs with only DATABASE_URL to connect: its worker and
 * client complete runs, a run started here completes too, then `signal` stops it gracefully.
 */
async function exerciseStandaloneWorker(t: TestDb, how: {
  command: string;
  args: string[];
  cwd: string;
  signal: "SIGTERM" | "SIGINT";
  exitCode: number;
  denoGlobal: string;
}): Promise<void> {
  const env: Record<string, string> = { ...Deno.env.toObject(), DATABASE_URL: t.url };
  delete env.EDGE_WORKER_DB_URL;
  delete env.SUPABASE_DB_URL;
  const child = new Deno.Command(how.command, {
    args: how.args,
    env,
    clearEnv: true,
    cwd: how.cwd,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = jsonLines(child.stdout);
  let stderr = "";
  const stderrDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (stderr += chunk) }),
  );
  try {
    const started = await lines.next().catch((error) => {
      throw new Error(`${error.message}\n${stderr}`);
    });
    assert.match(String(started.running), /^[0-9a-f-]{36}$/, stderr);
    assert.equal(started.denoGlobal, how.denoGlobal);
    const { outputs } = await lines.next().catch((error) => {
      throw new Error(`${error.message}\n${stderr}`);
    });
    assert.deepEqual(outputs, [{ plus_one: 3 }, { plus_one: 5 }, { plus_one: 7 }]);

    // Runs started from elsewhere are done by this worker too.
    const run = await startFlow(t.sql, { flowSlug: "node_arithmetic", input: { n: 20 } });
    assert.deepEqual((await waitForRun(t.sql, run.run_id)).output, { plus_one: 41 });

    child.kill(how.signal);
    const status = await child.status;
    await stderrDone;
    await lines.rest();
    assert.equal(status.code, how.exitCode, stderr);
    const stopped = lines.logs.find((log) => log.includes(`msg="worker stopped"`));
    assert.match(stopped ?? lines.logs.join("\n"), new RegExp(`reason="signal ${how.signal}"`));
    const [worker] = await t.sql`
      select stopped_at from pgflow.workers where worker_id = ${String(started.running)}`;
    assert.ok(worker.stopped_at instanceof Date, "the worker marked itself stopped");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await stderrDone.catch(() => {});
    await lines.close();
  }
}

/**
 * Type-checks a Node consumer of the package (TypeScript, NodeNext resolution): the declarations
 * resolve, and the flow's types reach the client (the expected errors must occur). Returns the
 * compiler's messages.
 */
function typeCheckConsumer(outDir: string): string[] {
  const consumer = `${outDir}/consumer.ts`;
  Deno.writeTextFileSync(
    consumer,
    `import { createClient, Flow, startWorker, type EdgeflowClient } from "./index.js";
import { createClient as clientOnly } from "./client.js";
const F = new Flow<{ n: number }>({ slug: "f" }).step({ slug: "a" }, ({ run }) => run.n * 2);
declare const client: EdgeflowClient;
const run = await client.startFlow(F, { n: 1 });
const output: { a: number } | null = run.output;
// @ts-expect-error: the input is typed by the flow
await client.startFlow(F, { n: "x" });
// @ts-expect-error: no such step
run.step("b");
const worker = await startWorker(F, { compilation: { allowDataLoss: false } });
await worker.stop();
export { clientOnly, createClient, output };
`,
  );
  const program = ts.createProgram([consumer], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2023.d.ts", "lib.dom.d.ts"],
    types: [],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  });
  return ts.getPreEmitDiagnostics(program).map((diagnostic) =>
    `${diagnostic.file?.fileName ?? ""}: ${
      ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
    }`
  );
}
