/** Step conditions and skips in the SQL core (pgflow 0.14's semantics), on the real database. */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import {
  define,
  failOne,
  getRun,
  runUntilIdle,
  stepStatuses,
  takeTasks,
} from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import { addStep, createFlow } from "../src/db/definitions.ts";
import type { Sql } from "../src/db/connect.ts";

async function skips(sql: Sql, runId: string): Promise<Record<string, string | null>> {
  const rows = await sql<{ step_slug: string; skip_reason: string | null }[]>`
    select step_slug, skip_reason from pgflow.step_states
    where run_id = ${runId} and status = 'skipped' order by step_slug`;
  return Object.fromEntries(rows.map((r) => [r.step_slug, r.skip_reason]));
}

dbTest("add_step takes pgflow 0.14's named arguments and checks them", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('c');
     select pgflow.add_step(flow_slug => 'c', step_slug => 'a',
       required_input_pattern => '{"go": true}', forbidden_input_pattern => '{"stop": true}',
       when_unmet => 'skip-cascade', when_exhausted => 'skip');
     select pgflow.add_step('c', 'b', array['a']);`,
  );
  const rows = [
    ...await sql`
    select step_slug, required_input_pattern, forbidden_input_pattern, when_unmet, when_exhausted
    from pgflow.steps where flow_slug = 'c' order by step_index`,
  ];
  assert.deepEqual(rows, [
    {
      step_slug: "a",
      required_input_pattern: { go: true },
      forbidden_input_pattern: { stop: true },
      when_unmet: "skip-cascade",
      when_exhausted: "skip",
    },
    {
      step_slug: "b",
      required_input_pattern: null,
      forbidden_input_pattern: null,
      when_unmet: "skip",
      when_exhausted: "fail",
    },
  ]);
  await assert.rejects(
    sql`select pgflow.add_step('c', 'x', when_unmet => 'ignore')`,
    /add_step\('c', 'x'\): when_unmet must be 'fail', 'skip' or 'skip-cascade', got 'ignore'/,
  );
  await assert.rejects(
    sql`select pgflow.add_step('c', 'x', when_exhausted => 'retry')`,
    /when_exhausted must be 'fail', 'skip' or 'skip-cascade', got 'retry'/,
  );
  await assert.rejects(
    sql`select pgflow.add_step('c', 'x', required_input_pattern => '[1]')`,
    /required_input_pattern must be a JSON object \(matched with @>\), got array/,
  );
  await assert.rejects(
    sql`select pgflow.add_step('c', 'x', forbidden_input_pattern => '"s"')`,
    /forbidden_input_pattern must be a JSON object/,
  );
  // Same condition again: the existing step; a different one is refused.
  await sql`select pgflow.add_step('c', 'a', required_input_pattern => '{"go": true}',
    forbidden_input_pattern => '{"stop": true}', when_unmet => 'skip-cascade', when_exhausted => 'skip')`;
  await assert.rejects(
    sql`select pgflow.add_step('c', 'a', required_input_pattern => '{"go": false}',
      forbidden_input_pattern => '{"stop": true}', when_unmet => 'skip-cascade', when_exhausted => 'skip')`,
    /the step exists with required_input_pattern=\{"go": true\}.*a different condition needs a new flow slug/,
  );
  assert.equal(
    (await sql`select count(*)::int as n from pgflow.steps where flow_slug = 'c'`)[0].n,
    2,
  );
});

const ROOT = (mode: string) => `
  select pgflow.create_flow('root');
  select pgflow.add_step('root', 'premium', required_input_pattern => '{"plan": "pro"}',
                         when_unmet => '${mode}');
  select pgflow.add_step('root', 'basic', forbidden_input_pattern => '{"plan": "pro"}');
  select pgflow.add_step('root', 'after', array['premium']);
  select pgflow.add_step('root', 'join', array['premium', 'basic']);`;

dbTest(
  "root conditions test the flow input; when_unmet 'skip' skips the step alone",
  async ({ sql }) => {
    await define(sql, ROOT("skip"));
    const pro = await startFlow(sql, { flowSlug: "root", input: { plan: "pro", n: 1 } });
    const free = await startFlow(sql, { flowSlug: "root", input: { plan: "free" } });
    assert.deepEqual(await skips(sql, pro.run_id), { basic: "condition_unmet" });
    assert.deepEqual(await skips(sql, free.run_id), { premium: "condition_unmet" });

    const inputs: Record<string, unknown> = {};
    await runUntilIdle(sql, "root", {
      premium: () => "P",
      basic: () => "B",
      after: (input, task) => (inputs[`${task.run_id}:after`] = input, "A"),
      join: (input, task) => (inputs[`${task.run_id}:join`] = input, "J"),
    });
    // A skipped dependency is an absent key; its dependents still run.
    assert.deepEqual(inputs[`${pro.run_id}:join`], { run: { plan: "pro", n: 1 }, premium: "P" });
    assert.deepEqual(inputs[`${free.run_id}:join`], { run: { plan: "free" }, basic: "B" });
    assert.deepEqual(inputs[`${free.run_id}:after`], { run: { plan: "free" } });
    const freeRun = await getRun(sql, free.run_id);
    assert.equal(freeRun.status, "completed");
    assert.deepEqual(freeRun.output, { after: "A", join: "J" });
    const [state] = await sql`
    select status, skip_reason, skipped_at is not null as stamped, remaining_tasks
    from pgflow.step_states where run_id = ${free.run_id} and step_slug = 'premium'`;
    assert.deepEqual(state, {
      status: "skipped",
      skip_reason: "condition_unmet",
      stamped: true,
      remaining_tasks: null,
    });
  },
);

dbTest("when_unmet 'skip-cascade' skips the step and everything after it", async ({ sql }) => {
  await define(sql, ROOT("skip-cascade"));
  const free = await startFlow(sql, { flowSlug: "root", input: { plan: "free" } });
  assert.deepEqual(await skips(sql, free.run_id), {
    after: "dependency_skipped",
    join: "dependency_skipped",
    premium: "condition_unmet",
  });
  await runUntilIdle(sql, "root", { basic: () => "B" });
  const run = await getRun(sql, free.run_id);
  // Every leaf was skipped: the run completes with an empty output.
  assert.equal(run.status, "completed");
  assert.deepEqual(run.output, {});
  assert.equal(run.remaining_steps, 0);
});

dbTest("when_unmet 'fail' fails the run before anything runs", async ({ sql }) => {
  await define(sql, ROOT("fail"));
  const free = await startFlow(sql, { flowSlug: "root", input: { plan: "free" } });
  const run = await getRun(sql, free.run_id);
  assert.equal(run.status, "failed");
  // Conditions are tested before any ready step starts: basic never started.
  assert.deepEqual(await stepStatuses(sql, free.run_id), {
    after: "created",
    basic: "created",
    join: "created",
    premium: "failed",
  });
  const [premium] = await sql`
    select error_message from pgflow.step_states where run_id = ${free.run_id} and step_slug = 'premium'`;
  assert.equal(premium.error_message, "Condition not met");
  assert.deepEqual(await takeTasks(sql, "root"), []);
  assert.equal((await sql`select count(*)::int as n from pgflow.step_tasks`)[0].n, 0);
});

dbTest(
  "dependent conditions test { <dep>: <output> } of the completed dependencies",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('dep');
     select pgflow.add_step('dep', 'check');
     select pgflow.add_step('dep', 'other');
     select pgflow.add_step('dep', 'notify', array['check', 'other'],
       required_input_pattern => '{"check": {"ok": false}}');
     select pgflow.add_step('dep', 'archive', array['check'],
       forbidden_input_pattern => '{"check": {"ok": false}}');`,
    );
    const bad = await startFlow(sql, { flowSlug: "dep", input: { id: 1 } });
    const seen: Record<string, unknown> = {};
    await runUntilIdle(sql, "dep", {
      check: () => ({ ok: false, reason: "x" }),
      other: () => 1,
      notify: (input) => (seen.notify = input, "sent"),
      archive: () => "archived",
    });
    assert.deepEqual(await skips(sql, bad.run_id), { archive: "condition_unmet" });
    assert.deepEqual(seen.notify, { run: { id: 1 }, check: { ok: false, reason: "x" }, other: 1 });
    assert.deepEqual((await getRun(sql, bad.run_id)).output, { notify: "sent" });

    const good = await startFlow(sql, { flowSlug: "dep", input: { id: 2 } });
    await runUntilIdle(sql, "dep", {
      check: () => ({ ok: true }),
      other: () => 1,
      archive: () => "a",
    });
    assert.deepEqual(await skips(sql, good.run_id), { notify: "condition_unmet" });
    assert.deepEqual((await getRun(sql, good.run_id)).output, { archive: "a" });
  },
);

dbTest("a skip-cascade through a diamond, and a skip whose dependents run on", async ({ sql }) => {
  // a -> b -> d, a -> c -> d, d -> e; c has a condition on a's output.
  const diamond = (mode: string) => `
    select pgflow.create_flow('dia_${mode.replace("-", "_")}');
    select pgflow.add_step('dia_${mode.replace("-", "_")}', 'a');
    select pgflow.add_step('dia_${mode.replace("-", "_")}', 'b', array['a']);
    select pgflow.add_step('dia_${mode.replace("-", "_")}', 'c', array['a'],
      required_input_pattern => '{"a": {"go": true}}', when_unmet => '${mode}');
    select pgflow.add_step('dia_${mode.replace("-", "_")}', 'd', array['b', 'c']);
    select pgflow.add_step('dia_${mode.replace("-", "_")}', 'e', array['d']);`;
  await define(sql, diamond("skip-cascade") + diamond("skip"));

  const cascade = await startFlow(sql, { flowSlug: "dia_skip_cascade", input: {} });
  await runUntilIdle(sql, "dia_skip_cascade", { a: () => ({ go: false }), b: () => "b" });
  assert.deepEqual(await skips(sql, cascade.run_id), {
    c: "condition_unmet",
    d: "dependency_skipped",
    e: "dependency_skipped",
  });
  // b is a completed non-leaf; the only leaf (e) was skipped.
  const cascaded = await getRun(sql, cascade.run_id);
  assert.equal(cascaded.status, "completed");
  assert.deepEqual(cascaded.output, {});

  const plain = await startFlow(sql, { flowSlug: "dia_skip", input: {} });
  let dInput: unknown;
  await runUntilIdle(sql, "dia_skip", {
    a: () => ({ go: false }),
    b: () => "b",
    d: (input) => (dInput = input, "d"),
    e: () => "e",
  });
  assert.deepEqual(await skips(sql, plain.run_id), { c: "condition_unmet" });
  assert.deepEqual(dInput, { run: {}, b: "b" });
  assert.deepEqual((await getRun(sql, plain.run_id)).output, { e: "e" });
});

dbTest("map steps: a root map with a condition, and a map over a skipped step", async ({ sql }) => {
  // A root map's condition tests the flow input (an array, which never contains an object).
  await define(
    sql,
    `select pgflow.create_flow('maps');
     select pgflow.add_step('maps', 'each', step_type => 'map', required_input_pattern => '{"a": 1}');
     select pgflow.add_step('maps', 'other', step_type => 'map', forbidden_input_pattern => '{"a": 1}');
     select pgflow.add_step('maps', 'after', array['each', 'other']);`,
  );
  const root = await startFlow(sql, { flowSlug: "maps", input: [1, 2] });
  assert.deepEqual(await skips(sql, root.run_id), { each: "condition_unmet" });
  await runUntilIdle(sql, "maps", { other: (n) => n, after: (input) => input });
  assert.deepEqual((await getRun(sql, root.run_id)).output, {
    after: { run: [1, 2], other: [1, 2] },
  });

  await define(
    sql,
    `select pgflow.create_flow('maps2');
     select pgflow.add_step('maps2', 'list', required_input_pattern => '{"run": 1}');
     select pgflow.add_step('maps2', 'each', array['list'], step_type => 'map');
     select pgflow.add_step('maps2', 'total', array['each']);`,
  );
  // list is a root step: its condition tests the flow input, which lacks "run".
  const run = await startFlow(sql, { flowSlug: "maps2", input: { n: 2 } });
  assert.deepEqual(await skips(sql, run.run_id), { list: "condition_unmet" });
  // The map over the skipped step maps over []: it completes at once with [].
  let total: unknown;
  await runUntilIdle(sql, "maps2", { total: (input) => (total = input, 0) });
  assert.deepEqual(total, { run: { n: 2 }, each: [] });
  assert.deepEqual((await getRun(sql, run.run_id)).output, { total: 0 });

  // A map whose own condition is unmet (its input: its source's output) is skipped whole.
  await define(
    sql,
    `select pgflow.create_flow('maps3');
     select pgflow.add_step('maps3', 'list');
     select pgflow.add_step('maps3', 'each', array['list'], step_type => 'map',
       required_input_pattern => '{"list": ["go"]}', when_unmet => 'skip-cascade');
     select pgflow.add_step('maps3', 'total', array['each']);`,
  );
  const r1 = await startFlow(sql, { flowSlug: "maps3", input: {} });
  await runUntilIdle(sql, "maps3", { list: () => ["x", "y"] });
  assert.deepEqual(await skips(sql, r1.run_id), {
    each: "condition_unmet",
    total: "dependency_skipped",
  });
  const r2 = await startFlow(sql, { flowSlug: "maps3", input: {} });
  await runUntilIdle(sql, "maps3", {
    list: () => ["go", "y"],
    each: (s) => s + "!",
    total: (input) => (input as { each: string[] }).each.join(","),
  });
  assert.deepEqual((await getRun(sql, r2.run_id)).output, { total: "go!,y!" });
});

dbTest(
  "when_exhausted: 'fail' fails the run, 'skip' and 'skip-cascade' skip the step",
  async ({ sql }) => {
    const flow = (slug: string, mode: string) => `
    select pgflow.create_flow('${slug}', max_attempts => 1);
    select pgflow.add_step('${slug}', 'flaky', when_exhausted => '${mode}');
    select pgflow.add_step('${slug}', 'after', array['flaky']);
    select pgflow.add_step('${slug}', 'side');`;
    await define(
      sql,
      flow("ex_fail", "fail") + flow("ex_skip", "skip") + flow("ex_cascade", "skip-cascade"),
    );

    const results: Record<string, { status: string; output: unknown; skipped: object }> = {};
    for (const slug of ["ex_fail", "ex_skip", "ex_cascade"]) {
      const run = await startFlow(sql, { flowSlug: slug, input: {} });
      for (const task of await takeTasks(sql, slug)) {
        if (task.step_slug === "flaky") await failOne(sql, task, "boom");
        else {
          await sql`select pgflow.complete_task(${run.run_id}, ${task.step_slug}, 0, '"s"'::jsonb)`;
        }
      }
      let afterInput: unknown;
      await runUntilIdle(sql, slug, { after: (input) => (afterInput = input, "a") });
      const done = await getRun(sql, run.run_id);
      results[slug] = {
        status: done.status,
        output: done.output,
        skipped: await skips(sql, run.run_id),
      };
      if (slug === "ex_skip") assert.deepEqual(afterInput, { run: {} });
    }
    assert.equal(results.ex_fail.status, "failed");
    assert.deepEqual(results.ex_skip, {
      status: "completed",
      output: { after: "a", side: "s" },
      skipped: { flaky: "handler_failed" },
    });
    assert.deepEqual(results.ex_cascade, {
      status: "completed",
      output: { side: "s" },
      skipped: { after: "dependency_skipped", flaky: "handler_failed" },
    });
    const [flaky] = await sql`
    select ss.error_message, t.status as task_status
    from pgflow.step_states ss join pgflow.runs r on r.run_id = ss.run_id
    join pgflow.step_tasks t on t.run_id = ss.run_id and t.step_slug = ss.step_slug
    where r.flow_slug = 'ex_skip' and ss.step_slug = 'flaky'`;
    assert.deepEqual(flaky, { error_message: "boom", task_status: "failed" });
  },
);

dbTest(
  "when_exhausted 'skip' on a map: the other tasks are cancelled, late reports change nothing",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('mapx', max_attempts => 1);
     select pgflow.add_step('mapx', 'each', step_type => 'map', when_exhausted => 'skip');
     select pgflow.add_step('mapx', 'total', array['each']);`,
    );
    const run = await startFlow(sql, { flowSlug: "mapx", input: [1, 2, 3] });
    const tasks = await takeTasks(sql, "mapx");
    assert.equal(tasks.length, 3);
    await failOne(sql, tasks[1], "bad element");
    // A late completion of a sibling is ignored.
    await sql`select pgflow.complete_task(${run.run_id}, 'each', 0, '1'::jsonb)`;
    const statuses = await sql`
    select task_index, status from pgflow.step_tasks where run_id = ${run.run_id} and step_slug = 'each'
    order by task_index`;
    assert.deepEqual(statuses.map((s) => s.status), ["cancelled", "failed", "cancelled"]);
    let total: unknown;
    await runUntilIdle(sql, "mapx", { total: (input) => (total = input, "t") });
    assert.deepEqual(total, { run: [1, 2, 3] });
    assert.deepEqual((await getRun(sql, run.run_id)).output, { total: "t" });
  },
);

dbTest("skips are announced as step:<slug>:skipped events", async ({ sql }) => {
  await sql.unsafe(`
    create schema realtime;
    create table realtime.sent (id serial, payload jsonb, event text, topic text, private boolean);
    create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void language sql as
    $$ insert into realtime.sent (payload, event, topic, private) values (payload, event, topic, private) $$;`);
  await define(sql, ROOT("skip-cascade"));
  const run = await startFlow(sql, { flowSlug: "root", input: {} });
  const sent = await sql`
    select event, payload from realtime.sent where event like '%skipped' order by id`;
  assert.deepEqual(sent.map((s) => s.event), [
    "step:premium:skipped",
    "step:after:skipped",
    "step:join:skipped",
  ]);
  const { skipped_at, ...payload } = sent[0].payload;
  assert.ok(skipped_at);
  assert.deepEqual(payload, {
    event: "step:premium:skipped",
    event_type: "step:skipped",
    run_id: run.run_id,
    flow_slug: "root",
    step_slug: "premium",
    status: "skipped",
    skip_reason: "condition_unmet",
  });
  assert.equal(sent[1].payload.skip_reason, "dependency_skipped");
});

dbTest(
  "resume_run tests a failed condition again instead of completing the step",
  async ({ sql }) => {
    await define(sql, ROOT("fail"));
    const run = await startFlow(sql, { flowSlug: "root", input: { plan: "free" } });
    assert.equal((await getRun(sql, run.run_id)).status, "failed");
    await sql`select pgflow.resume_run(${run.run_id})`;
    // The input still does not match: the condition fails the run again.
    assert.equal((await getRun(sql, run.run_id)).status, "failed");
    const [premium] = await sql`
    select status, error_message from pgflow.step_states
    where run_id = ${run.run_id} and step_slug = 'premium'`;
    assert.deepEqual(premium, { status: "failed", error_message: "Condition not met" });
  },
);

dbTest("the typed addStep passes conditions through", async ({ sql }) => {
  await createFlow(sql, { flowSlug: "typed" });
  const row = await addStep(sql, {
    flowSlug: "typed",
    stepSlug: "a",
    requiredInputPattern: { tier: "gold", tags: ["x"] },
    whenUnmet: "skip-cascade",
    whenExhausted: "skip",
  });
  assert.deepEqual(
    [row.required_input_pattern, row.forbidden_input_pattern, row.when_unmet, row.when_exhausted],
    [{ tier: "gold", tags: ["x"] }, null, "skip-cascade", "skip"],
  );
  const plain = await addStep(sql, { flowSlug: "typed", stepSlug: "b" });
  assert.deepEqual([plain.when_unmet, plain.when_exhausted], ["skip", "fail"]);
});
