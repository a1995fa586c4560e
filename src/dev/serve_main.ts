/**
 * `deno task serve`: the local edge runtime, serving `supabase/functions/<name>/index.ts` at
 * `http://127.0.0.1:54321/functions/v1/<name>` like `supabase functions serve`, without Docker.
 *
 *   deno run -A [--unstable-worker-options] src/dev/serve_main.ts [--functions-dir DIR]
 *     [--port N] [--wall-clock-ms N] [--early-drop-ms N] [--boot-timeout-ms N] [--sandbox]
 *
 * Functions get the process environment plus `<functions dir>/.env` (the process wins). One
 * log line per instance lifecycle event. Ctrl-C (or SIGTERM) sends `beforeunload`
 * (termination) to every instance, waits for them up to the grace period, and exits 0.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  DEFAULT_WALL_CLOCK_MS,
  formatEvent,
  readEnvFile,
  startEdgeRuntime,
  SUPABASE_LIKE_PERMISSIONS,
} from "./edge_runtime/mod.ts";
import { functionsDirPath, listFunctions } from "./edge_runtime/functions_dir.ts";

const USAGE = `usage: deno task serve [--functions-dir supabase/functions] [--port 54321]
  [--hostname 127.0.0.1] [--wall-clock-ms ${DEFAULT_WALL_CLOCK_MS}] [--early-drop-ms 30000]
  [--boot-timeout-ms 15000] [--termination-grace-ms 5000] [--sandbox]

--sandbox  runs each function with Supabase-like permissions (network, read, write only to
           /tmp; no subprocesses, no FFI); needs deno's --unstable-worker-options flag.`;

function numberOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number)) {
    console.error(`--${name}: expected a number, got "${value}"\n${USAGE}`);
    Deno.exit(2);
  }
  return number;
}

let args;
try {
  args = parseArgs({
    args: Deno.args,
    options: {
      "functions-dir": { type: "string", default: "supabase/functions" },
      port: { type: "string", default: "54321" },
      hostname: { type: "string", default: "127.0.0.1" },
      "wall-clock-ms": { type: "string" },
      "early-drop-ms": { type: "string" },
      "boot-timeout-ms": { type: "string" },
      "termination-grace-ms": { type: "string" },
      sandbox: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (error) {
  console.error(`${(error as Error).message}\n${USAGE}`);
  Deno.exit(2);
}
if (args.help) {
  console.log(USAGE);
  Deno.exit(0);
}

const functionsDir = functionsDirPath(args["functions-dir"]);
const env = { ...await readEnvFile(join(functionsDir, ".env")), ...Deno.env.toObject() };

const runtime = await startEdgeRuntime({
  functionsDir,
  port: numberOption("port", args.port),
  hostname: args.hostname,
  env,
  wallClockMs: numberOption("wall-clock-ms", args["wall-clock-ms"]),
  earlyDropMs: numberOption("early-drop-ms", args["early-drop-ms"]),
  bootTimeoutMs: numberOption("boot-timeout-ms", args["boot-timeout-ms"]),
  terminationGraceMs: numberOption("termination-grace-ms", args["termination-grace-ms"]),
  permissions: args.sandbox ? SUPABASE_LIKE_PERMISSIONS : "inherit",
  onEvent: (event) => console.log(formatEvent(event)),
});

const names = await listFunctions(functionsDir);
console.log(`edge runtime listening on ${runtime.url}`);
console.log(`  functions in ${functionsDir}: ${names.join(", ") || "(none yet)"}`);
for (const name of names) console.log(`  ${runtime.url}/functions/v1/${name}`);
console.log(
  `  wall clock ${args["wall-clock-ms"] ?? DEFAULT_WALL_CLOCK_MS} ms (CPU and memory limits are ` +
    `not enforced); isolates: ${args.sandbox ? "sandboxed" : "inherit permissions"}`,
);

let stopping = false;
const shutdown = async () => {
  if (stopping) Deno.exit(130); // A second signal: do not wait.
  stopping = true;
  console.log("edge runtime stopping: beforeunload (termination) to every instance");
  await runtime.stop();
  console.log("edge runtime stopped");
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", shutdown);
Deno.addSignalListener("SIGTERM", shutdown);
