/**
 * Off Supabase, events go through pg_notify, and any role that can connect may
 * LISTEN on any channel. A role with no grant at all listens on a run's topic:
 * it learns ids and statuses, never the run's input, outputs or errors.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, failOne, takeTasks } from "./_support/drive.ts";
import { eventually } from "./_support/eventually.ts";
import { connect, type Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import { completeTask, completeTasks } from "../src/db/tasks.ts";

const ALLOWED_KEYS = new Set([
  "event",
  "event_type",
  "run_id",
  "flow_slug",
  "step_slug",
  "status",
  "failed_step",
  "started_at",
  "completed_at",
  "failed_at",
]);

/** Runs `fn` with a pool of a new login role that has no grant at all; drops the role after. */
async function asEavesdropper(
  sql: Sql,
  url: string,
  name: string,
  fn: (spy: Sql) => Promise<void>,
): Promise<void> {
  const role = `${name}_${Deno.pid}`;
  await sql.unsafe(`create role ${role} login password 'eavesdrop'`);
  const spyUrl = new URL(url);
  spyUrl.username = role;
  spyUrl.password = "eavesdrop";
  const spy = connect(spyUrl.toString(), { max: 1 });
  try {
    await fn(spy);
  } finally {
    await spy.end();
    await sql.unsafe(`drop role ${role}`);
  }
}

dbTest(
  "a role without grants that LISTENs on a run gets ids and statuses, no inputs, outputs or errors",
  async ({ sql, url }) => {
    await define(
      sql,
      `select pgflow.create_flow('leaky', max_attempts => 1);
       select pgflow.add_step('leaky', 'a');
       select pgflow.add_step('leaky', 'b', deps_slugs => array['a']);`,
    );
    await asEavesdropper(sql, url, "eavesdropper", async (spy) => {
      const runId = "5b0c1d2e-3f40-4a51-8b62-7c83d94ea5fb";
      const payloads: string[] = [];
      await spy.listen(`pgflow:run:${runId}`, (payload) => payloads.push(payload));
      await startFlow(sql, { flowSlug: "leaky", input: { card: "INPUT-SECRET" }, runId });
      const [a] = await takeTasks(sql, "leaky");
      await completeTask(sql, {
        runId,
        stepSlug: "a",
        taskIndex: a.task_index,
        output: "OUTPUT-SECRET",
      });
      const [b] = await takeTasks(sql, "leaky");
      await failOne(sql, b, "ERROR-SECRET");
      await eventually("run:failed", () => payloads.some((p) => p.includes('"run:failed"')));

      const events = payloads.map((p) => JSON.parse(p) as Record<string, unknown>);
      assert.deepEqual(events.map((e) => e.event), [
        "run:started",
        "step:a:started",
        "step:a:completed",
        "step:b:started",
        "step:b:failed",
        "run:failed",
      ]);
      for (const payload of payloads) {
        assert.doesNotMatch(payload, /SECRET/, payload);
        for (const key of Object.keys(JSON.parse(payload))) {
          assert.ok(ALLOWED_KEYS.has(key), `notification carries ${key}: ${payload}`);
        }
      }
      for (const event of events) assert.equal(event.run_id, runId);
      assert.deepEqual(events.map((e) => e.status), [
        "started",
        "started",
        "completed",
        "started",
        "failed",
        "failed",
      ]);
    });
  },
);

dbTest(
  "events of a batch (complete_tasks, start_flows) carry no inputs or outputs either",
  async ({ sql, url }) => {
    await define(
      sql,
      `select pgflow.create_flow('leaky_batch');
       select pgflow.add_step('leaky_batch', 'a');`,
    );
    await asEavesdropper(sql, url, "batch_eavesdropper", async (spy) => {
      const runIds = [
        "6b0c1d2e-3f40-4a51-8b62-7c83d94ea5fb",
        "7b0c1d2e-3f40-4a51-8b62-7c83d94ea5fb",
      ];
      const payloads: string[] = [];
      for (const runId of runIds) {
        await spy.listen(`pgflow:run:${runId}`, (payload) => payloads.push(payload));
      }
      await sql`select count(*) from pgflow.start_flows('leaky_batch',
        array['{"card": "INPUT-SECRET-1"}'::jsonb, '{"card": "INPUT-SECRET-2"}'::jsonb],
        ${runIds}::uuid[])`;
      const tasks = await takeTasks(sql, "leaky_batch");
      assert.equal(tasks.length, 2);
      const results = await completeTasks(
        sql,
        tasks.map((t) => ({
          runId: t.run_id,
          stepSlug: "a",
          taskIndex: t.task_index,
          output: "OUTPUT-SECRET",
        })),
      );
      assert.deepEqual(results.map((r) => r.status), ["completed", "completed"]);
      await eventually(
        "both run:completed",
        () => payloads.filter((p) => p.includes('"run:completed"')).length === 2,
      );

      const events = payloads.map((p) => JSON.parse(p) as Record<string, unknown>);
      for (const runId of runIds) {
        assert.deepEqual(
          events.filter((e) => e.run_id === runId).map((e) => e.event),
          ["run:started", "step:a:started", "step:a:completed", "run:completed"],
        );
      }
      for (const payload of payloads) {
        assert.doesNotMatch(payload, /SECRET/, payload);
        for (const key of Object.keys(JSON.parse(payload))) {
          assert.ok(ALLOWED_KEYS.has(key), `notification carries ${key}: ${payload}`);
        }
      }
    });
  },
);
