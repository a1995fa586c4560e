/**
 * The client over supabase-js: the real supabase-js 2 (postgrest-js for RPC, realtime-js for the
 * broadcast channel) against a stand-in for PostgREST and Realtime (tests/_support/
 * supabase_standin.ts) over the test database, with a real worker running the flow.
 *
 * Exercised: supabase-js's `schema("pgflow").rpc(...)` requests and error shapes, the grants a
 * client role needs, realtime-js joining `pgflow:run:<id>` and receiving the broadcasts that the
 * core's events write through Supabase's `realtime.send` (stand-in) into `realtime.messages`.
 * Not exercised: the real PostgREST and Realtime servers (JWT checks, RLS on private channels,
 * reconnects), which do not run here.
 */
import assert from "node:assert/strict";
import { createClient as createSupabaseClient } from "@supabase/supabase-js";
import { createClient, RunEndedError, type RunEvent } from "../src/client/mod.ts";
import { Flow } from "../src/dsl/mod.ts";
import { eventually } from "./_support/eventually.ts";
import { loadSupabaseStandIns, startSupabaseStandIn } from "./_support/supabase_standin.ts";
import { workerTest } from "./_support/worker.ts";

const Sum = new Flow<{ numbers: number[] }>({ slug: "sum_up", maxAttempts: 1 })
  .array({ slug: "items" }, ({ run }) => run.numbers)
  .map({ slug: "doubled", array: "items" }, (n) => {
    if (n < 0) throw new Error(`negative: ${n}`);
    return n * 2;
  })
  .step(
    { slug: "total", dependsOn: ["doubled"] },
    ({ doubled }) => doubled.reduce((a, b) => a + b, 0),
  );

const GRANTS = `
  grant usage on schema pgflow to authenticated;
  grant execute on function pgflow.start_flow_with_states(text, jsonb, uuid) to authenticated;
  grant execute on function pgflow.get_run_with_states(uuid) to authenticated;`;

workerTest(
  "supabase-js client: RPC through PostgREST, events through Realtime broadcast",
  async (t) => {
    await loadSupabaseStandIns(t.url, t.sql);
    await t.run(Sum);
    const standIn = await startSupabaseStandIn(t.connect(2));
    const supabase = createSupabaseClient(standIn.url, "anon-key", {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    });
    const client = createClient(supabase, { onError: (error) => assert.fail(String(error)) });
    try {
      // Without the grants the client role may not call the functions: the error says so.
      await assert.rejects(
        client.startFlow(Sum, { numbers: [1] }),
        /pgflow.start_flow_with_states failed: permission denied for (schema|function) .*\(42501\)/,
      );
      await t.sql.unsafe(GRANTS);

      const run = await client.startFlow(Sum, { numbers: [1, 2, 3] });
      const events: RunEvent[] = [];
      run.on("*", (event) => events.push(event));
      await run.waitFor("completed", { timeoutMs: 10_000 });
      assert.deepEqual(run.output, { total: 12 });
      assert.deepEqual(run.steps.map((step) => [step.slug, step.status]), [
        ["items", "completed"],
        ["doubled", "completed"],
        ["total", "completed"],
      ]);
      await eventually(
        "run:completed through Realtime",
        () => events.some((event) => event.event === "run:completed"),
      );
      // Realtime carries the full payload (its own authorization applies on this path).
      const completed = events.find((event) => event.event === "run:completed")!;
      assert.deepEqual(completed.output, { total: 12 });
      assert.equal(events[0].event, "run:started");
      assert.deepEqual(events[0].input, { numbers: [1, 2, 3] });
      assert.ok(standIn.broadcasts.includes(`pgflow:run:${run.runId} run:completed`));
      assert.ok(standIn.rpcCalls.includes("start_flow_with_states"));
      assert.ok(standIn.rpcCalls.includes("get_run_with_states"));

      const failing = await client.startFlow<typeof Sum>("sum_up", { numbers: [1, -1] });
      await assert.rejects(failing.waitFor("completed", { timeoutMs: 10_000 }), (error) => {
        assert.ok(error instanceof RunEndedError);
        assert.equal(error.failedStep, "doubled");
        assert.match(error.message, /negative: -1/);
        return true;
      });

      await assert.rejects(
        client.getRun("00000000-0000-4000-8000-000000000000"),
        /pgflow.get_run_with_states failed: get_run_with_states: run 00000000-0000-4000-8000-000000000000 does not exist \(P0002\)/,
      );
    } finally {
      await client.close();
      await supabase.removeAllChannels();
      await standIn.close();
    }
  },
  {
    unclosableThirdPartyTimer:
      "realtime-js's socket disconnect schedules a fallback timer it never clears " +
      "(phoenix socketAdapter.js, disconnect())",
  },
);
