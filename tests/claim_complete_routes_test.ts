/**
 * Differential test of the worker's claim and completion routes: a run driven through any
 * claim route (pgmq.read then start_tasks; read and start in one statement; claiming with a
 * completion) and any completion route (complete_task; complete_tasks in a batch, set-based
 * for map tasks; complete_task_and_claim; complete_tasks_and_claim, a batch that claims) ends
 * in the same state: the same run, step and task rows (timestamps and ids aside), the same
 * inputs seen by each task, the same events (in causal order; steps completed in one batch
 * announce it in step order, one by one in report order), and no message left.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import type { Sql } from "../src/db/connect.ts";
import { readMessages } from "../src/db/queue.ts";
import { startFlow } from "../src/db/runs.ts";
import {
  completeTask,
  completeTaskAndClaim,
  completeTasks,
  completeTasksAndClaim,
  readAndStartTasks,
  startTasks,
} from "../src/db/tasks.ts";
import type { Json, StepTaskRecord } from "../src/db/types.ts";

const WORKER = "44444444-4444-4444-8444-444444444444";
const FLOW = "routes";

type ClaimRoute = "read-then-start" | "read-and-start";
type CompleteRoute =
  | "complete_task"
  | "complete_tasks"
  | "complete_task_and_claim"
  | "complete_tasks_and_claim";

/** What a handler returns: depends only on the task and its input, as a real handler would. */
function outputOf(task: StepTaskRecord): Json {
  const input = task.input as Record<string, Json> & Json;
  switch (task.step_slug) {
    case "split":
      return [1, 2, 3, 4];
    case "double":
      return (input as unknown as number) * 2;
    case "label":
      return `run ${JSON.stringify(input.run)} split ${JSON.stringify(input.split)}`;
    case "join":
      return { doubled: input.double, label: input.label };
    default:
      throw new Error(`unexpected step ${task.step_slug}`);
  }
}

async function claim(sql: Sql, route: ClaimRoute): Promise<StepTaskRecord[]> {
  if (route === "read-and-start") {
    const started = await readAndStartTasks(sql, {
      flowSlug: FLOW,
      workerId: WORKER,
      vt: 30,
      qty: 10,
    });
    return started.map((s) => s.task);
  }
  const messages = await readMessages(sql, { queueName: FLOW, vt: 30, qty: 10 });
  if (messages.length === 0) return [];
  return await startTasks(sql, {
    flowSlug: FLOW,
    msgIds: messages.map((m) => Number(m.msg_id)),
    workerId: WORKER,
  });
}

/** Completes `tasks`; returns tasks a completion claimed on the way. */
async function complete(
  sql: Sql,
  route: CompleteRoute,
  tasks: StepTaskRecord[],
): Promise<StepTaskRecord[]> {
  const key = (t: StepTaskRecord) => ({
    runId: t.run_id,
    stepSlug: t.step_slug,
    taskIndex: t.task_index,
    output: outputOf(t),
  });
  if (route === "complete_tasks") {
    const results = await completeTasks(sql, tasks.map(key));
    assert.ok(results.every((r) => r.status === "completed"), JSON.stringify(results));
    return [];
  }
  if (route === "complete_tasks_and_claim") {
    const { results, claimed } = await completeTasksAndClaim(sql, tasks.map(key), {
      flowSlug: FLOW,
      workerId: WORKER,
      vt: 30,
      qty: 10,
    });
    assert.ok(results.every((r) => r.status === "completed"), JSON.stringify(results));
    return claimed.map((c) => c.task);
  }
  const claimed: StepTaskRecord[] = [];
  for (const task of tasks) {
    if (route === "complete_task") {
      assert.equal((await completeTask(sql, key(task))).status, "completed");
    } else {
      const outcome = await completeTaskAndClaim(sql, {
        ...key(task),
        workerId: WORKER,
        vt: 30,
        qty: 10,
      });
      assert.equal(outcome.result.status, "completed");
      claimed.push(...outcome.claimed.map((c) => c.task));
    }
  }
  return claimed;
}

/** Drives one run to its end; returns the inputs each task saw and the run's events. */
async function drive(
  sql: Sql,
  listener: Sql,
  claimRoute: ClaimRoute,
  completeRoute: CompleteRoute,
) {
  const runId = crypto.randomUUID();
  // The run's events as pg_notify carries them (no Realtime here), times left out.
  const events: string[] = [];
  const subscription = await listener.listen(`pgflow:run:${runId}`, (payload) => {
    const { event, status, step_slug } = JSON.parse(payload);
    events.push([event, status, step_slug ?? ""].join(" "));
  });
  const run = await startFlow(sql, { flowSlug: FLOW, input: { n: 7 }, runId });
  const inputs: Record<string, Json> = {};
  let pending = await claim(sql, claimRoute);
  for (let round = 0; pending.length > 0; round++) {
    assert.ok(round < 20, "the run does not finish");
    for (const task of pending) inputs[`${task.step_slug}[${task.task_index}]`] = task.input;
    const claimed = await complete(sql, completeRoute, pending);
    pending = claimed.length > 0 ? claimed : await claim(sql, claimRoute);
  }
  await eventually("run:completed event", () => events.at(-1)?.startsWith("run:completed"));
  await subscription.unlisten();
  return { runId: run.run_id, inputs, events };
}

/** The run starts first and completes last; each step starts after its dependencies complete. */
function assertCausalOrder(route: string, events: string[]) {
  const at = (event: string) => {
    const index = events.findIndex((e) => e.startsWith(`${event} `));
    assert.ok(index >= 0, `${route}: no ${event} in ${events.join(", ")}`);
    return index;
  };
  assert.equal(at("run:started"), 0, route);
  assert.equal(at("run:completed"), events.length - 1, route);
  const deps: Record<string, string[]> = {
    split: [],
    double: ["split"],
    label: ["split"],
    join: ["double", "label"],
  };
  for (const [step, before] of Object.entries(deps)) {
    assert.ok(at(`step:${step}:started`) < at(`step:${step}:completed`), `${route}: ${step}`);
    for (const dep of before) {
      assert.ok(at(`step:${dep}:completed`) < at(`step:${step}:started`), `${route}: ${step}`);
    }
  }
}

/** A run's state without ids and timestamps. */
async function stateOf(sql: Sql, runId: string) {
  const [run] = await sql`
    select status, output, remaining_steps, input from pgflow.runs where run_id = ${runId}`;
  const steps = await sql`
    select step_slug, status, initial_tasks, remaining_tasks, remaining_deps,
           started_at is not null as started, completed_at is not null as completed
    from pgflow.step_states where run_id = ${runId} order by step_slug`;
  const tasks = await sql`
    select step_slug, task_index, status, attempts_count, output, error_message,
           last_worker_id, completed_at is not null as completed
    from pgflow.step_tasks where run_id = ${runId} order by step_slug, task_index`;
  const [queue] = await sql`
    select (select count(*) from pgmq.q_routes where message->>'run_id' = ${runId})::int as queued,
           (select count(*) from pgmq.a_routes where message->>'run_id' = ${runId})::int as archived`;
  return { run, steps: [...steps], tasks: [...tasks], queue };
}

dbTest("every claim and completion route leaves the same state", async ({ sql, connect }) => {
  const listener = connect(1);
  await sql.unsafe(`
    select pgflow.create_flow('${FLOW}');
    select pgflow.add_step('${FLOW}', 'split');
    select pgflow.add_step('${FLOW}', 'double', deps_slugs => array['split'], step_type => 'map');
    select pgflow.add_step('${FLOW}', 'label', deps_slugs => array['split']);
    select pgflow.add_step('${FLOW}', 'join', deps_slugs => array['double', 'label']);`);

  const routes: [ClaimRoute, CompleteRoute][] = [];
  for (const c of ["read-then-start", "read-and-start"] as const) {
    for (
      const d of [
        "complete_task",
        "complete_tasks",
        "complete_task_and_claim",
        "complete_tasks_and_claim",
      ] as const
    ) {
      routes.push([c, d]);
    }
  }
  const results = [];
  for (const [claimRoute, completeRoute] of routes) {
    const { runId, inputs, events } = await drive(sql, listener, claimRoute, completeRoute);
    assertCausalOrder(`${claimRoute} + ${completeRoute}`, events);
    results.push({
      route: `${claimRoute} + ${completeRoute}`,
      inputs,
      events: events.toSorted(),
      ...await stateOf(sql, runId),
    });
  }

  const [reference, ...others] = results;
  assert.equal(reference.run.status, "completed");
  assert.deepEqual(reference.run.output, {
    join: { doubled: [2, 4, 6, 8], label: 'run {"n":7} split [1,2,3,4]' },
  });
  assert.equal(reference.tasks.length, 7);
  assert.deepEqual(reference.queue, { queued: 0, archived: 7 });
  for (const other of others) {
    const { route: _a, ...expected } = reference;
    const { route, ...actual } = other;
    assert.deepEqual(actual, expected, `${route} differs from ${reference.route}`);
  }
});

dbTest(
  "a batch of reports across many runs and flows leaves the same state as one report at a time",
  async ({ sql }) => {
    // Maps over maps, a fan-in, a root leaf and a root map over [] that completes at start; a
    // diamond of single steps; the same diamond with a conditional step (settled run by run).
    await sql.unsafe(`
      select pgflow.create_flow('batchy');
      select pgflow.add_step('batchy', 'items', step_type => 'map');
      select pgflow.add_step('batchy', 'doubled', deps_slugs => array['items'], step_type => 'map');
      select pgflow.add_step('batchy', 'total', deps_slugs => array['doubled']);
      select pgflow.add_step('batchy', 'side');
      select pgflow.create_flow('fan');
      select pgflow.add_step('fan', 'a');
      select pgflow.add_step('fan', 'b', deps_slugs => array['a']);
      select pgflow.add_step('fan', 'c', deps_slugs => array['a']);
      select pgflow.add_step('fan', 'd', deps_slugs => array['b', 'c']);
      select pgflow.create_flow('fan_if');
      select pgflow.add_step('fan_if', 'a');
      select pgflow.add_step('fan_if', 'b', deps_slugs => array['a']);
      select pgflow.add_step('fan_if', 'c', deps_slugs => array['a']);
      select pgflow.add_step('fan_if', 'd', deps_slugs => array['b', 'c']);
      select pgflow.add_step('fan_if', 'e', deps_slugs => array['a'],
        required_input_pattern => '{"a": {"go": true}}', when_unmet => 'skip');
      select pgflow.create_flow('fan_guard');
      select pgflow.add_step('fan_guard', 'a');
      select pgflow.add_step('fan_guard', 'b', deps_slugs => array['a']);
      select pgflow.add_step('fan_guard', 'e', deps_slugs => array['a'],
        required_input_pattern => '{"a": {"go": true}}', when_unmet => 'fail');`);
    const starts: [string, Json][] = [
      ...[[1, 2, 3], [], [5], [1, 2], [4, 4, 4, 4]].map((
        input,
      ): [string, Json] => ["batchy", input]),
      ...[1, 2, 3].map((n): [string, Json] => ["fan", n]),
      ...[true, false, true].map((go): [string, Json] => ["fan_if", { go }]),
      ...[true, false].map((go): [string, Json] => ["fan_guard", { go }]),
    ];
    const outputOfTask = (t: StepTaskRecord): Json => {
      const input = t.input as Record<string, Json>;
      switch (`${t.flow_slug}.${t.step_slug}`) {
        case "batchy.total":
          return (input.doubled as number[]).reduce((a, b) => a + b, 0);
        case "batchy.side":
          return "side";
        case "batchy.items":
        case "batchy.doubled":
          return (t.input as number) * 2;
        case "fan.a":
        case "fan_if.a":
        case "fan_guard.a":
          return { go: (input.run as { go?: boolean }).go ?? false, n: input.run };
        case "fan.d":
        case "fan_if.d":
          return [input.b, input.c];
        default:
          return t.step_slug;
      }
    };
    /** Starts the runs and completes every task, in one batch per round or one by one. */
    const driveAll = async (batched: boolean) => {
      const runIds = [];
      for (const [flowSlug, input] of starts) {
        runIds.push((await startFlow(sql, { flowSlug, input })).run_id);
      }
      for (let round = 0;; round++) {
        assert.ok(round < 20, "the runs do not finish");
        const tasks: StepTaskRecord[] = [];
        for (const flowSlug of ["batchy", "fan", "fan_if", "fan_guard"]) {
          const messages = await readMessages(sql, { queueName: flowSlug, vt: 30, qty: 100 });
          if (messages.length === 0) continue;
          tasks.push(
            ...await startTasks(sql, {
              flowSlug,
              msgIds: messages.map((m) => Number(m.msg_id)),
              workerId: WORKER,
            }),
          );
        }
        if (tasks.length === 0) break;
        const reports = tasks.map((t) => ({
          runId: t.run_id,
          stepSlug: t.step_slug,
          taskIndex: t.task_index,
          output: outputOfTask(t),
        }));
        if (batched) {
          const results = await completeTasks(sql, reports);
          assert.ok(results.every((r) => r.status === "completed"), JSON.stringify(results));
        } else {
          for (const report of reports) {
            assert.equal((await completeTask(sql, report)).status, "completed");
          }
        }
      }
      const states = [];
      for (const runId of runIds) {
        const [run] = await sql`
          select status, output, remaining_steps from pgflow.runs where run_id = ${runId}`;
        const steps = await sql`
          select step_slug, status, initial_tasks, remaining_tasks, remaining_deps, skip_reason,
                 completed_at is not null as completed
          from pgflow.step_states where run_id = ${runId} order by step_slug`;
        const tasks = await sql`
          select step_slug, task_index, status, output from pgflow.step_tasks
          where run_id = ${runId} order by step_slug, task_index`;
        states.push({ run, steps: [...steps], tasks: [...tasks] });
      }
      return states;
    };

    const batched = await driveAll(true);
    const oneByOne = await driveAll(false);
    assert.deepEqual(batched, oneByOne);
    // The last run's condition fails it.
    assert.deepEqual(
      batched.map((s) => s.run.status),
      starts.map((_, i) => i === starts.length - 1 ? "failed" : "completed"),
    );
    assert.deepEqual(batched.slice(0, 5).map((s) => s.run.output), [
      { side: "side", total: 24 },
      { side: "side", total: 0 },
      { side: "side", total: 20 },
      { side: "side", total: 12 },
      { side: "side", total: 64 },
    ]);
    assert.deepEqual(batched[5].run.output, { d: ["b", "c"] });
    assert.deepEqual(batched[9].run.output, { d: ["b", "c"] }, "e skipped: not in the output");
    assert.deepEqual(batched[8].run.output, { d: ["b", "c"], e: "e" });
    const [queue] = await sql`
      select (select count(*) from pgmq.q_batchy)::int + (select count(*) from pgmq.q_fan)::int
             + (select count(*) from pgmq.q_fan_if)::int + (select count(*) from pgmq.q_fan_guard)::int
             as n`;
    assert.equal(queue.n, 0);
  },
);
