/**
 * `deno task test [deno test args]`: one PostgreSQL server for the whole run
 * (DATABASE_URL when set, else an embedded PostgreSQL 17 in a temp folder),
 * then `deno test` over tests/, then a plain `N passed, N failed` summary line.
 */
import { startThrowawayPostgres } from "./embedded_postgres.ts";

const given = Deno.env.get("DATABASE_URL");
let stop = async () => {};
let url = given;
if (!url) {
  const server = await startThrowawayPostgres("test");
  url = server.url;
  stop = server.stop;
}

const junitPath = await Deno.makeTempFile({ prefix: "edgeflow-junit-", suffix: ".xml" });
const args = Deno.args.length ? Deno.args : ["tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--parallel", `--junit-path=${junitPath}`, ...args],
  env: { EDGEFLOW_TEST_DATABASE_URL: url },
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

const forward = () => child.kill("SIGTERM");
Deno.addSignalListener("SIGINT", forward);
const status = await child.status;
Deno.removeSignalListener("SIGINT", forward);
await stop();

console.log(await summarize(junitPath));
await Deno.remove(junitPath).catch(() => {});
Deno.exit(status.code);

/** Counts test cases (not steps) from deno's JUnit report. */
async function summarize(path: string): Promise<string> {
  let xml = "";
  try {
    xml = await Deno.readTextFile(path);
  } catch {
    return "0 passed, 1 failed";
  }
  const cases = xml.match(/<testcase\b[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g) ?? [];
  const failed = cases.filter((c) => /<failure\b/.test(c)).length;
  const skipped = cases.filter((c) => /<skipped\b/.test(c)).length;
  const passed = cases.length - failed - skipped;
  return `tests: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : "");
}
