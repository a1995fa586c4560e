/** `edgeflow cancel|resume|restart <run>` against a real database. */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, getRun, runUntilIdle } from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";

const CLI_MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function edgeflow(args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI_MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

dbTest("edgeflow cancel, resume and restart operate a run and explain refusals", async ({
  sql,
  url,
}) => {
  await define(sql, `select pgflow.create_flow('ops'); select pgflow.add_step('ops', 'only');`);
  const run = await startFlow(sql, { flowSlug: "ops", input: { n: 1 } });
  const db = ["--db-url", url];

  const cancelled = await edgeflow(["cancel", run.run_id, "--reason", "from the CLI", ...db]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout, new RegExp(`run ${run.run_id} of flow ops is cancelled \\(at `));
  const [state] =
    await sql`select error_message from pgflow.step_states where run_id = ${run.run_id}`;
  assert.equal(state.error_message, "cancelled: from the CLI");

  const resumed = await edgeflow(["resume", run.run_id, ...db]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(
    resumed.stdout,
    new RegExp(`resumed run ${run.run_id} of flow ops: 1 step\\(s\\) left`),
  );
  await runUntilIdle(sql, "ops", { only: () => "done" });
  assert.equal((await getRun(sql, run.run_id)).status, "completed");

  const refused = await edgeflow(["cancel", run.run_id, ...db]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /^error: cancel_run\(.*\): the run already completed at .*; there is nothing to cancel/,
  );

  const restarted = await edgeflow(["restart", run.run_id, ...db]);
  assert.equal(restarted.code, 0, restarted.stderr);
  const match = /restarted run .* as run ([0-9a-f-]{36}) of flow ops/.exec(restarted.stdout);
  assert.ok(match, restarted.stdout);
  const [linked] = await sql`select restart_of_run_id, input from pgflow.runs where run_id = ${
    match[1]
  }`;
  assert.deepEqual({ ...linked }, { restart_of_run_id: run.run_id, input: { n: 1 } });

  const unknown = await edgeflow(["resume", "00000000-0000-4000-8000-000000000000", ...db]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /run 00000000-0000-4000-8000-000000000000 does not exist/);
});

Deno.test("edgeflow cancel|resume|restart: bad usage exits 2", async () => {
  for (
    const [args, message] of [
      [["cancel"], /cancel needs exactly one <run id>/],
      [["resume", "a", "b"], /resume needs exactly one <run id>/],
      [["restart", "not-a-uuid"], /<run id> must be a UUID, got "not-a-uuid"/],
      [["resume", "00000000-0000-4000-8000-000000000000", "--reason", "x"], /reason/],
    ] as const
  ) {
    const result = await edgeflow([...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
  }
});
