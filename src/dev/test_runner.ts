/**
 * `deno task test [deno test args]`: one PostgreSQL server for the whole run
 * (DATABASE_URL when set, else an embedded PostgreSQL 17 in a temp folder),
 * then `deno test` over tests/, then a plain `N passed, N failed` summary line.
 *
 * With ../shared/pgmq beside the clone, the embedded server gets the real pgmq
 * and the suite must run on it. EDGEFLOW_STRICT=1 (CI) also requires the real
 * pgmq with DATABASE_URL, and fails the run when any test was skipped.
 */
import { startThrowawayPostgres } from "./embedded_postgres.ts";
import { exitOnSetupError } from "./postgres_setup_error.ts";
import { hasSharedPgmq } from "./server_files.ts";

const strict = Boolean(Deno.env.get("EDGEFLOW_STRICT"));
const given = Deno.env.get("DATABASE_URL");
let stop = async () => {};
let url = given;
if (!url) {
  const server = await exitOnSetupError(() => startThrowawayPostgres("test"));
  url = server.url;
  stop = server.stop;
}
const requireRealPgmq = strict || (!given && hasSharedPgmq());
console.log(
  `test server: ${given ? "DATABASE_URL" : "embedded PostgreSQL 17"}; pgmq: ${
    requireRealPgmq ? "the real extension (required)" : "the extension if present, else compat"
  }`,
);

const junitPath = await Deno.makeTempFile({ prefix: "edgeflow-junit-", suffix: ".xml" });
const args = Deno.args.length ? Deno.args : ["tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--parallel", `--junit-path=${junitPath}`, ...args],
  env: {
    EDGEFLOW_TEST_DATABASE_URL: url,
    ...(requireRealPgmq ? { EDGEFLOW_REQUIRE_REAL_PGMQ: "1" } : {}),
  },
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

const forward = () => child.kill("SIGTERM");
Deno.addSignalListener("SIGINT", forward);
const status = await child.status;
Deno.removeSignalListener("SIGINT", forward);
await stop();

const counts = await summarize(junitPath);
await Deno.remove(junitPath).catch(() => {});
// deno test can fail before any test runs (type errors): that is a failure too.
if (!status.success && counts.failed === 0) counts.failed = 1;
console.log(
  `tests: ${counts.passed} passed, ${counts.failed} failed` +
    (counts.skipped ? `, ${counts.skipped} skipped` : ""),
);
if (strict && counts.skipped > 0) {
  console.error(
    `EDGEFLOW_STRICT: ${counts.skipped} test(s) were skipped; see their printed reasons`,
  );
  Deno.exit(1);
}
Deno.exit(status.code);

/** Counts test cases (not steps) from deno's JUnit report. */
async function summarize(
  path: string,
): Promise<{ passed: number; failed: number; skipped: number }> {
  let xml = "";
  try {
    xml = await Deno.readTextFile(path);
  } catch {
    return { passed: 0, failed: 1, skipped: 0 };
  }
  const cases = xml.match(/<testcase\b[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g) ?? [];
  const failed = cases.filter((c) => /<failure\b/.test(c)).length;
  const skipped = cases.filter((c) => /<skipped\b/.test(c)).length;
  return { passed: cases.length - failed - skipped, failed, skipped };
}
