/**
 * `deno task demo`: edgeflow end to end on the embedded default. Starts an
 * embedded PostgreSQL, applies supabase/migrations (the core and the example
 * flows), serves supabase/functions through the local edge runtime, lets the
 * keep-alive loop boot the word_stats worker, starts a batch of runs of a flow
 * with a map step, shows progress, prints outputs and a summary, and exits 0.
 */
import { parseArgs } from "node:util";
import { connect } from "../db/connect.ts";
import { applyMigrations, readMigrations } from "../db/migrate.ts";
import { startFlow } from "../db/runs.ts";
import { startThrowawayPostgres } from "./embedded_postgres.ts";
import { installPgmq } from "./pgmq.ts";
import { exitOnSetupError } from "./postgres_setup_error.ts";
import { startEdgeRuntime } from "./edge_runtime/mod.ts";
import { startKeepAlive } from "./keep_alive.ts";
import { SUPABASE_DIR } from "./supabase_project.ts";

const { values } = parseArgs({ args: Deno.args, options: { runs: { type: "string" } } });
const RUNS = Number(values.runs ?? 40);
if (!Number.isInteger(RUNS) || RUNS < 1) {
  console.error("--runs must be a positive integer");
  Deno.exit(2);
}
const FUNCTION = "word-stats-worker";
const SENTENCES = [
  "Workflows live in Postgres.",
  "Each step is a task in a queue!",
  "Maps fan out one task per element and fan back in.",
  "Workers run inside edge functions.",
  "Retries back off exponentially?",
  "Nothing is lost when a worker dies.",
];

const began = performance.now();
const say = (text: string) =>
  console.log(`[${((performance.now() - began) / 1000).toFixed(1)}s] ${text}`);

const given = Deno.env.get("DATABASE_URL");
let stopServer = async () => {};
let url = given;
if (!url) {
  const server = await exitOnSetupError(() => startThrowawayPostgres("demo"));
  url = server.url;
  stopServer = server.stop;
  say(`embedded PostgreSQL 17 started (${url})`);
}
const sql = connect(url, { max: 4, applicationName: "edgeflow-demo" });
let exitCode = 0;
try {
  const pgmq = await installPgmq(sql);
  const applied = await applyMigrations(
    sql,
    await readMigrations(new URL("migrations/", `file://${SUPABASE_DIR}`)),
  );
  say(`pgmq: ${pgmq}; applied ${applied.length} migration(s) from supabase/migrations`);

  const runtime = await startEdgeRuntime({
    functionsDir: `${SUPABASE_DIR}functions`,
    env: { SUPABASE_DB_URL: url, EDGE_WORKER_LOG_LEVEL: "warn" },
    onEvent: (event) => {
      if (event.type === "ready" || event.type === "terminate") {
        say(`edge runtime: ${event.type} ${event.function}`);
      }
    },
  });
  say(`local edge runtime serving supabase/functions at ${runtime.url}`);

  // pg_cron + pg_net's job on Supabase: boot a worker when none is live.
  await sql`select pgflow.track_worker_function(${FUNCTION})`;
  const keepAlive = startKeepAlive({
    sql,
    runtime,
    onInvoke: (name, status) => say(`keep-alive invoked ${name} (HTTP ${status})`),
  });

  const texts = Array.from(
    { length: RUNS },
    (_, i) =>
      Array.from(
        { length: 1 + (i % SENTENCES.length) },
        (_, j) => SENTENCES[(i + j) % SENTENCES.length],
      ).join(" "),
  );
  const startedAt = performance.now();
  const runIds: string[] = [];
  for (const text of texts) {
    runIds.push((await startFlow(sql, { flowSlug: "word_stats", input: { text } })).run_id);
  }
  say(`started ${RUNS} runs of word_stats (sentences -> map count_words -> totals)`);

  let last = -1;
  const deadline = Date.now() + 120_000;
  while (true) {
    const [progress] = await sql<{ completed: number; failed: number; tasks: number }[]>`
      select count(*) filter (where status = 'completed')::int as completed,
             count(*) filter (where status = 'failed')::int as failed,
             (select count(*) from pgflow.step_tasks where flow_slug = 'word_stats' and status = 'completed')::int as tasks
      from pgflow.runs where run_id = any(${runIds}::uuid[])`;
    const done = progress.completed + progress.failed;
    if (done !== last) {
      const bar = "#".repeat(Math.round((done / RUNS) * 30)).padEnd(30, ".");
      say(
        `[${bar}] ${progress.completed}/${RUNS} completed, ${progress.failed} failed, ${progress.tasks} tasks done`,
      );
      last = done;
    }
    if (done === RUNS) break;
    if (Date.now() > deadline) {
      throw new Error(`only ${done} of ${RUNS} runs finished within 120 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const wallMs = performance.now() - startedAt;

  const outputs = await sql<
    { output: { totals: { sentences: number; words: number; longest: string } } }[]
  >`
    select output from pgflow.runs where run_id = any(${runIds}::uuid[]) and status = 'completed'
    order by started_at limit 3`;
  console.log("\nsample outputs:");
  for (const { output } of outputs) console.log(`  ${JSON.stringify(output)}`);
  const [totals] = await sql<{ runs: number; failed: number; tasks: number }[]>`
    select count(*)::int as runs, count(*) filter (where status = 'failed')::int as failed,
           (select count(*) from pgflow.step_tasks where flow_slug = 'word_stats' and status = 'completed')::int as tasks
    from pgflow.runs where run_id = any(${runIds}::uuid[])`;
  console.log(
    `\nsummary: ${totals.runs} runs (${totals.failed} failed), ${totals.tasks} tasks, ` +
      `${(wallMs / 1000).toFixed(2)} s wall time, ${
        (totals.tasks / (wallMs / 1000)).toFixed(0)
      } tasks/s`,
  );
  if (totals.failed > 0) exitCode = 1;

  await keepAlive.stop();
  await runtime.stop();
} catch (error) {
  console.error(`demo failed: ${error instanceof Error ? error.stack : String(error)}`);
  exitCode = 1;
} finally {
  await sql.end({ timeout: 2 });
  await stopServer();
}
Deno.exit(exitCode);
