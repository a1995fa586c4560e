import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import { define, failOne, runUntilIdle, takeTasks } from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import { completeTask } from "../src/db/tasks.ts";

const DIAMOND = `
  select pgflow.create_flow('diamond');
  select pgflow.add_step('diamond', 'a');
  select pgflow.add_step('diamond', 'b', deps_slugs => array['a']);
  select pgflow.add_step('diamond', 'c', deps_slugs => array['a']);
  select pgflow.add_step('diamond', 'd', deps_slugs => array['b', 'c']);`;

interface Event {
  event: string;
  event_type: string;
  run_id: string;
  status: string;
  step_slug?: string;
  output?: unknown;
}

dbTest(
  "pg_notify carries every event of a run, in order, on pgflow:run:<id>",
  async ({ sql, connect }) => {
    await define(sql, DIAMOND);
    const runId = "7d1f3c52-9a0e-4c1b-8f5e-0a2b3c4d5e6f";
    const listener = connect(1);
    const events: Event[] = [];
    await listener.listen(`pgflow:run:${runId}`, (payload) => events.push(JSON.parse(payload)));

    await startFlow(sql, { flowSlug: "diamond", input: { x: 1 }, runId });
    await runUntilIdle(sql, "diamond", { a: () => 1, b: () => 2, c: () => 3, d: () => 4 });
    await eventually(
      "run:completed event",
      () => events.some((e) => e.event === "run:completed"),
    );

    assert.deepEqual(
      events.map((e) => e.event),
      [
        "run:started",
        "step:a:started",
        "step:a:completed",
        "step:b:started",
        "step:c:started",
        "step:b:completed",
        "step:c:completed",
        "step:d:started",
        "step:d:completed",
        "run:completed",
      ],
    );
    for (const event of events) assert.equal(event.run_id, runId);
    const completed = events.at(-1)!;
    assert.equal(completed.event_type, "run:completed");
    assert.equal(completed.status, "completed");
    const stepDone = events.find((e) => e.event === "step:b:completed")!;
    assert.deepEqual([stepDone.event_type, stepDone.step_slug, stepDone.status], [
      "step:completed",
      "b",
      "completed",
    ]);
    // Outputs stay behind get_run_with_states: anyone may LISTEN (tests/notify_payload_test.ts).
    for (const event of events) assert.equal(event.output, undefined, event.event);
  },
);

dbTest(
  "failure events name the failed step, not its error message",
  async ({ sql, connect }) => {
    await define(
      sql,
      `select pgflow.create_flow('bad', max_attempts => 1);
     select pgflow.add_step('bad', 'a');`,
    );
    const runId = "0e4c1a2b-3d4e-4f50-8a6b-7c8d9e0f1a2b";
    const listener = connect(1);
    const events: Event[] = [];
    await listener.listen(`pgflow:run:${runId}`, (payload) => events.push(JSON.parse(payload)));
    await startFlow(sql, { flowSlug: "bad", input: { secret: "s3cret" }, runId });
    const [task] = await takeTasks(sql, "bad");
    await failOne(sql, task, "nope");
    await eventually("run:failed event", () => events.some((e) => e.event === "run:failed"));
    assert.deepEqual(events.map((e) => e.event), [
      "run:started",
      "step:a:started",
      "step:a:failed",
      "run:failed",
    ]);
    const failed = events.at(-1) as Event & { failed_step: string; error_message?: string };
    assert.deepEqual([failed.failed_step, failed.status, failed.error_message], [
      "a",
      "failed",
      undefined,
    ]);
  },
);

dbTest("where Supabase's realtime.send exists, events go through it", async ({ sql }) => {
  // A stand-in with the signature of Supabase Realtime's realtime.send that records its calls.
  await sql.unsafe(`
    create schema realtime;
    create table realtime.sent (id serial, payload jsonb, event text, topic text, private boolean);
    create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void language sql as
    $$ insert into realtime.sent (payload, event, topic, private) values (payload, event, topic, private) $$;`);
  await define(sql, DIAMOND);
  const run = await startFlow(sql, { flowSlug: "diamond", input: {} });
  await runUntilIdle(sql, "diamond", { a: () => 1, b: () => 2, c: () => 3, d: () => 4 });
  const sent = await sql`select event, topic, private, payload from realtime.sent order by id`;
  assert.equal(sent.length, 10);
  assert.deepEqual(sent.map((s) => s.event).slice(0, 3), [
    "run:started",
    "step:a:started",
    "step:a:completed",
  ]);
  assert.equal(sent.at(-1)!.event, "run:completed");
  for (const s of sent) {
    assert.equal(s.topic, `pgflow:run:${run.run_id}`);
    assert.equal(s.private, false);
    assert.equal(s.payload.run_id, run.run_id);
  }
});

dbTest(
  "a run that fails announces it once: a type violation, a task out of attempts",
  async ({ sql }) => {
    // Realtime records every call (pg_notify folds identical notifications of a transaction).
    await sql.unsafe(`
      create schema realtime;
      create table realtime.sent (id serial, event text, topic text);
      create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
      returns void language sql as
      $$ insert into realtime.sent (event, topic) values (event, topic) $$;`);
    await define(
      sql,
      `select pgflow.create_flow('typed');
       select pgflow.add_step('typed', 'list');
       select pgflow.add_step('typed', 'each', deps_slugs => array['list'], step_type => 'map');
       select pgflow.create_flow('once', max_attempts => 1);
       select pgflow.add_step('once', 'a');`,
    );
    const typed = await startFlow(sql, { flowSlug: "typed", input: {} });
    const [list] = await takeTasks(sql, "typed");
    const row = await completeTask(sql, {
      runId: typed.run_id,
      stepSlug: "list",
      taskIndex: 0,
      output: { not: "an array" },
    });
    assert.equal(row.status, "failed");
    assert.equal(list.step_slug, "list");
    const once = await startFlow(sql, { flowSlug: "once", input: {} });
    const [a] = await takeTasks(sql, "once");
    assert.equal((await failOne(sql, a, "nope")).status, "failed");

    for (const [run, step] of [[typed.run_id, "list"], [once.run_id, "a"]]) {
      const sent = await sql`
        select event from realtime.sent where topic = ${`pgflow:run:${run}`} order by id`;
      assert.deepEqual(sent.map((s) => s.event), [
        "run:started",
        `step:${step}:started`,
        `step:${step}:failed`,
        "run:failed",
      ]);
    }
  },
);
