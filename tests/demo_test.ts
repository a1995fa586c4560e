import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";

const DEMO = new URL("../src/dev/demo_main.ts", import.meta.url).pathname;

dbTest(
  "the demo runs a batch of map-flow runs through the local edge runtime and exits 0",
  async ({ url }) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", DEMO, "--runs", "12"],
      env: { DATABASE_URL: url },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stdout + stderr);
    assert.match(stdout, /keep-alive invoked word-stats-worker \(HTTP 200\)/);
    assert.match(stdout, /\[#{30}\] 12\/12 completed, 0 failed/);
    assert.match(
      stdout,
      /summary: 12 runs \(0 failed\), \d+ tasks, [\d.]+ s wall time, \d+ tasks\/s/,
    );
  },
  { template: "empty" },
);
