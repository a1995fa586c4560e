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

const args = Deno.args.length ? Deno.args : ["tests/"];
const env = {
  EDGEFLOW_TEST_DATABASE_URL: url,
  ...(requireRealPgmq ? { EDGEFLOW_REQUIRE_REAL_PGMQ: "1" } : {}),
};
const first = await runDenoTest(["--parallel", ...args], env);

// Tests that wait on real time (edge isolates, outages, other processes) can miss a deadline on a
// loaded machine. Each file with a failure runs once more, alone; a test fails only if it fails
// again, and every test that needed the second run is named, so flakiness stays visible.
let final = first;
if (first.failedFiles.length > 0 && first.failedFiles.length <= 5) {
  console.log(`\nrunning again, one at a time: ${first.failedFiles.join(", ")}`);
  // File by file: deno names a test's file in its output only when it runs several.
  const runs: TestRun[] = [];
  for (const file of first.failedFiles) runs.push(await runDenoTest([file], env, file));
  const second = mergeRuns(runs);
  // Only a test that ran again and passed counts as flaky; one that did not run again failed.
  const stillFailed = first.failedCases.filter((name) => !second.passedCases.includes(name));
  for (const name of first.failedCases) {
    if (!stillFailed.includes(name)) console.log(`flaky (passed when run again): ${name}`);
  }
  final = {
    ...second,
    success: second.success && stillFailed.length === 0,
    failedCases: [...new Set([...stillFailed, ...second.failedCases])],
    passed: first.passed + second.passed - first.passedInFiles(first.failedFiles),
    skipped: first.skipped,
  };
}
await stop();

const failed = final.failedCases.length || (final.success ? 0 : 1);
console.log(
  `tests: ${final.passed} passed, ${failed} failed` +
    (final.skipped ? `, ${final.skipped} skipped` : ""),
);
if (strict && final.skipped > 0) {
  console.error(
    `EDGEFLOW_STRICT: ${final.skipped} test(s) were skipped; see their printed reasons`,
  );
  Deno.exit(1);
}
Deno.exit(failed ? 1 : 0);

interface TestRun {
  success: boolean;
  passed: number;
  skipped: number;
  /** "file => test name" of each failed test case. */
  failedCases: string[];
  passedCases: string[];
  failedFiles: string[];
  passedInFiles(files: string[]): number;
}

async function runDenoTest(
  testArgs: string[],
  env: Record<string, string>,
  onlyFile?: string,
): Promise<TestRun> {
  const junitPath = await Deno.makeTempFile({ prefix: "edgeflow-junit-", suffix: ".xml" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", `--junit-path=${junitPath}`, ...testArgs],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const forward = () => child.kill("SIGTERM");
  Deno.addSignalListener("SIGINT", forward);
  const fileOf = await echoAndMapTestFiles(child.stdout);
  const status = await child.status;
  Deno.removeSignalListener("SIGINT", forward);
  const cases = (await readCases(junitPath)).map((c) => ({
    ...c,
    file: fileOf.get(c.name) ?? onlyFile ?? c.file,
  }));
  await Deno.remove(junitPath).catch(() => {});
  const label = (c: { file: string; name: string }) => `${c.file} => ${c.name}`;
  const failedCases = cases.filter((c) => c.failed).map(label);
  return {
    success: status.success,
    passed: cases.filter((c) => !c.failed && !c.skipped).length,
    skipped: cases.filter((c) => c.skipped).length,
    failedCases,
    passedCases: cases.filter((c) => !c.failed && !c.skipped).map(label),
    failedFiles: [...new Set(cases.filter((c) => c.failed).map((c) => c.file))],
    passedInFiles: (files) =>
      cases.filter((c) => files.includes(c.file) && !c.failed && !c.skipped).length,
  };
}

function mergeRuns(runs: TestRun[]): TestRun {
  return {
    success: runs.every((run) => run.success),
    passed: runs.reduce((sum, run) => sum + run.passed, 0),
    skipped: runs.reduce((sum, run) => sum + run.skipped, 0),
    failedCases: runs.flatMap((run) => run.failedCases),
    passedCases: runs.flatMap((run) => run.passedCases),
    failedFiles: runs.flatMap((run) => run.failedFiles),
    passedInFiles: (files) => runs.reduce((sum, run) => sum + run.passedInFiles(files), 0),
  };
}

/**
 * Passes deno test's output through and maps each test's name to the file it ran in, from
 * its `<file> => <name> ... ok|FAILED` lines: the JUnit report names the file that called
 * Deno.test instead (tests/_support/db.ts for every dbTest).
 */
async function echoAndMapTestFiles(
  stdout: ReadableStream<Uint8Array>,
): Promise<Map<string, string>> {
  const fileOf = new Map<string, string>();
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of stdout) {
    await Deno.stdout.write(chunk);
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      // deno-lint-ignore no-control-regex
      const plain = line.replace(/\x1b\[[0-9;]*m/g, "");
      const match = /^(\S+\.ts) => (.+) \.\.\. (ok|FAILED|ignored)/.exec(plain);
      if (match) fileOf.set(match[2], match[1]);
    }
  }
  return fileOf;
}

/** The test cases (not steps) of deno's JUnit report. */
async function readCases(
  path: string,
): Promise<{ file: string; name: string; failed: boolean; skipped: boolean }[]> {
  let xml = "";
  try {
    xml = await Deno.readTextFile(path);
  } catch {
    return [];
  }
  // The report's file (classname) is where Deno.test was called, tests/_support/db.ts for every
  // dbTest: the caller maps names to files from deno's output and uses this only as a fallback.
  const cases = xml.match(/<testcase\b[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g) ?? [];
  return cases.map((c) => ({
    file: /\bclassname="([^"]*)"/.exec(c)?.[1] ?? "",
    name: unescapeXml(/\bname="([^"]*)"/.exec(c)?.[1] ?? ""),
    failed: /<failure\b/.test(c),
    skipped: /<skipped\b/.test(c),
  }));
}

function unescapeXml(text: string): string {
  return text.replace(
    /&(apos|quot|lt|gt|amp);/g,
    (_, entity: string) => ({ apos: "'", quot: '"', lt: "<", gt: ">", amp: "&" })[entity]!,
  );
}
