import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, getRun, runUntilIdle, stepStatuses, takeTasks } from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import { completeTask, completeTasks } from "../src/db/tasks.ts";
import type { Json, StepTaskRecord } from "../src/db/types.ts";

dbTest(
  "a root map makes one task per input element and aggregates outputs in order",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('double');
     select pgflow.add_step('double', 'each', step_type => 'map');
     select pgflow.add_step('double', 'sum', deps_slugs => array['each']);`,
    );
    const run = await startFlow(sql, { flowSlug: "double", input: [1, 2, 3, 4, 5] });
    const [state] = await sql`
    select initial_tasks, remaining_tasks, status from pgflow.step_states
    where run_id = ${run.run_id} and step_slug = 'each'`;
    assert.deepEqual(state, { initial_tasks: 5, remaining_tasks: 5, status: "started" });

    const tasks = await takeTasks(sql, "double");
    assert.deepEqual(tasks.map((t) => [t.task_index, t.input]), [[0, 1], [1, 2], [2, 3], [3, 4], [
      4,
      5,
    ]]);
    // Complete out of order: aggregation follows task_index, not completion order.
    for (const task of [...tasks].reverse()) {
      await completeTask(sql, {
        runId: run.run_id,
        stepSlug: "each",
        taskIndex: task.task_index,
        output: (task.input as number) * 2,
      });
    }
    const [sum] = await takeTasks(sql, "double");
    assert.deepEqual(sum.input, { run: [1, 2, 3, 4, 5], each: [2, 4, 6, 8, 10] });
    await completeTask(sql, { runId: run.run_id, stepSlug: "sum", taskIndex: 0, output: 30 });
    assert.deepEqual((await getRun(sql, run.run_id)).output, { sum: 30 });
  },
);

dbTest(
  "a map over a single step's array output, then a map chain, keeps order",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('chain');
     select pgflow.add_step('chain', 'list');
     select pgflow.add_step('chain', 'upper', deps_slugs => array['list'], step_type => 'map');
     select pgflow.add_step('chain', 'len', deps_slugs => array['upper'], step_type => 'map');`,
    );
    const run = await startFlow(sql, { flowSlug: "chain", input: { n: 3 } });
    const seen: Json[] = [];
    await runUntilIdle(sql, "chain", {
      list: () => ["a", "bb", "ccc"],
      upper: (s) => {
        seen.push(s);
        return (s as string).toUpperCase();
      },
      len: (s) => (s as string).length,
    });
    assert.deepEqual(seen, ["a", "bb", "ccc"]);
    const done = await getRun(sql, run.run_id);
    assert.equal(done.status, "completed");
    assert.deepEqual(done.output, { len: [1, 2, 3] });
  },
);

dbTest("NULL elements are distributed to their tasks and NULL outputs kept", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('nulls');
     select pgflow.add_step('nulls', 'each', step_type => 'map');`,
  );
  const run = await startFlow(sql, { flowSlug: "nulls", input: [null, 1, null, "x"] });
  const inputs: Json[] = [];
  await runUntilIdle(sql, "nulls", {
    each: (element) => {
      inputs.push(element);
      return element === 1 ? null : element;
    },
  });
  assert.deepEqual(inputs, [null, 1, null, "x"]);
  assert.deepEqual((await getRun(sql, run.run_id)).output, { each: [null, null, null, "x"] });
});

dbTest("an empty array cascades through three maps in one transaction", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('empty');
     select pgflow.add_step('empty', 'map1', step_type => 'map');
     select pgflow.add_step('empty', 'map2', deps_slugs => array['map1'], step_type => 'map');
     select pgflow.add_step('empty', 'map3', deps_slugs => array['map2'], step_type => 'map');`,
  );
  const run = await startFlow(sql, { flowSlug: "empty", input: [] });
  assert.equal(run.status, "completed", "start_flow itself completes the run");
  assert.deepEqual(run.output, { map3: [] });
  assert.deepEqual(await stepStatuses(sql, run.run_id), {
    map1: "completed",
    map2: "completed",
    map3: "completed",
  });
  const [counts] = await sql`
    select (select count(*) from pgflow.step_tasks)::int as tasks,
           (select count(*) from pgmq.q_empty)::int as messages`;
  assert.deepEqual(counts, { tasks: 0, messages: 0 });
});

dbTest("a single step returning [] completes its dependent map at once", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('emptydep');
     select pgflow.add_step('emptydep', 'list');
     select pgflow.add_step('emptydep', 'each', deps_slugs => array['list'], step_type => 'map');
     select pgflow.add_step('emptydep', 'after', deps_slugs => array['each']);`,
  );
  const run = await startFlow(sql, { flowSlug: "emptydep", input: {} });
  let afterInput: Json = null;
  await runUntilIdle(sql, "emptydep", {
    list: () => [],
    each: () => {
      throw new Error("no element to map");
    },
    after: (input) => {
      afterInput = input;
      return "done";
    },
  });
  assert.deepEqual(afterInput, { run: {}, each: [] });
  assert.equal((await getRun(sql, run.run_id)).status, "completed");
});

dbTest(
  "a non-array output into a map fails the run, keeps the output, archives messages",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('violation');
     select pgflow.add_step('violation', 'list');
     select pgflow.add_step('violation', 'other');
     select pgflow.add_step('violation', 'each', deps_slugs => array['list'], step_type => 'map');`,
    );
    const run = await startFlow(sql, { flowSlug: "violation", input: {} });
    const tasks = await takeTasks(sql, "violation");
    assert.deepEqual(tasks.map((t) => t.step_slug).sort(), ["list", "other"]);

    const row = await completeTask(sql, {
      runId: run.run_id,
      stepSlug: "list",
      taskIndex: 0,
      output: { not: "an array" },
    });
    assert.equal(row.status, "failed");
    assert.deepEqual(row.output, { not: "an array" });
    assert.match(row.error_message!, /\[TYPE_VIOLATION\].*"?list"?.*map step 'each'.*got object/);

    const done = await getRun(sql, run.run_id);
    assert.equal(done.status, "failed");
    assert.ok(done.failed_at);
    assert.deepEqual(await stepStatuses(sql, run.run_id), {
      each: "created",
      list: "failed",
      other: "failed",
    });
    const open = await sql`
    select step_slug from pgflow.step_tasks
    where run_id = ${run.run_id} and status in ('queued', 'started')`;
    assert.equal(open.length, 0, "no task of the failed run is left queued or started");
    const [queue] = await sql`
    select (select count(*) from pgmq.q_violation)::int as queued,
           (select count(*) from pgmq.a_violation)::int as archived`;
    assert.deepEqual(queue, { queued: 0, archived: 2 });

    // The other step's worker reports late: nothing changes.
    const late = await completeTask(sql, {
      runId: run.run_id,
      stepSlug: "other",
      taskIndex: 0,
      output: 1,
    });
    assert.equal(late.status, "cancelled");
    assert.equal(late.output, null);
  },
);

dbTest(
  "in a batch, a single step feeding a map is checked one by one; the other reports complete set-based",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('violation');
     select pgflow.add_step('violation', 'list');
     select pgflow.add_step('violation', 'other');
     select pgflow.add_step('violation', 'each', deps_slugs => array['list'], step_type => 'map');`,
    );
    const bad = await startFlow(sql, { flowSlug: "violation", input: {} });
    const good = await startFlow(sql, { flowSlug: "violation", input: {} });
    const tasks = await takeTasks(sql, "violation");
    const task = (runId: string, step: string) =>
      tasks.find((t) => t.run_id === runId && t.step_slug === step)!;
    const report = (t: StepTaskRecord, output: Json) => ({
      runId: t.run_id,
      stepSlug: t.step_slug,
      taskIndex: t.task_index,
      output,
    });
    const results = await completeTasks(sql, [
      report(task(bad.run_id, "list"), { not: "an array" }),
      report(task(bad.run_id, "other"), 1),
      report(task(good.run_id, "list"), [1, 2]),
      report(task(good.run_id, "other"), 2),
    ]);
    assert.deepEqual(results.map((r) => r.status), [
      "failed",
      "completed",
      "completed",
      "completed",
    ]);
    assert.match(results[0].error_message!, /\[TYPE_VIOLATION\].*map step 'each'.*got object/);
    assert.equal((await getRun(sql, bad.run_id)).status, "failed");
    const each = await takeTasks(sql, "violation");
    assert.deepEqual(each.map((t) => [t.run_id, t.step_slug, t.input]), [
      [good.run_id, "each", 1],
      [good.run_id, "each", 2],
    ]);
  },
);

dbTest(
  "start_flow rejects a non-array input for a root map and writes nothing",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('rootmap');
     select pgflow.add_step('rootmap', 'each', step_type => 'map');`,
    );
    for (const input of [{ a: 1 }, 3, "x", null]) {
      await assert.rejects(
        startFlow(sql, { flowSlug: "rootmap", input }),
        /start_flow\('rootmap'\): root map step 'each' maps over the flow input, which must be a JSON array/,
      );
    }
    const [{ count }] = await sql`select count(*)::int as count from pgflow.runs`;
    assert.equal(count, 0);
  },
);

dbTest("a 1,000-element map completes with every output in order", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('wide');
     select pgflow.add_step('wide', 'list');
     select pgflow.add_step('wide', 'each', deps_slugs => array['list'], step_type => 'map');`,
  );
  const run = await startFlow(sql, { flowSlug: "wide", input: 1000 });
  await runUntilIdle(sql, "wide", {
    list: (input) => Array.from({ length: (input as { run: number }).run }, (_, i) => i),
    each: (n) => (n as number) * 3,
  });
  const done = await getRun(sql, run.run_id);
  assert.equal(done.status, "completed");
  assert.deepEqual(done.output, { each: Array.from({ length: 1000 }, (_, i) => i * 3) });
});

dbTest(
  "concurrent workers completing one map's tasks finish it exactly once",
  async ({ sql, connect }) => {
    await define(
      sql,
      `select pgflow.create_flow('race');
     select pgflow.add_step('race', 'each', step_type => 'map');
     select pgflow.add_step('race', 'total', deps_slugs => array['each']);`,
    );
    const width = 200;
    const run = await startFlow(sql, {
      flowSlug: "race",
      input: Array.from({ length: width }, (_, i) => i),
    });
    const workers = Array.from({ length: 4 }, (_, w) => ({ sql: connect(2), id: `${w}` }));
    const seen = new Set<number>();
    const totals: StepTaskRecord[] = [];
    await Promise.all(workers.map(async (worker) => {
      const workerId = `00000000-0000-4000-8000-00000000000${worker.id}`;
      while (true) {
        const tasks = await takeTasks(worker.sql, "race", 7, workerId);
        if (tasks.length === 0) return;
        for (const task of tasks) {
          if (task.step_slug === "total") {
            totals.push(task);
            continue;
          }
          assert.ok(!seen.has(task.task_index), `task ${task.task_index} handed out twice`);
          seen.add(task.task_index);
          await completeTask(worker.sql, {
            runId: run.run_id,
            stepSlug: "each",
            taskIndex: task.task_index,
            output: task.task_index + 1,
          });
        }
      }
    }));
    assert.equal(seen.size, width);
    totals.push(...await takeTasks(sql, "race"));
    assert.equal(totals.length, 1, "the dependent step was started once");
    const [total] = totals;
    const each = (total.input as { each: number[] }).each;
    assert.deepEqual(each, Array.from({ length: width }, (_, i) => i + 1));
    const [state] = await sql`
    select status, remaining_tasks from pgflow.step_states where run_id = ${run.run_id} and step_slug = 'each'`;
    assert.deepEqual(state, { status: "completed", remaining_tasks: 0 });
  },
);

dbTest(
  "a batch of map reports completes set-based: counts, archives, finishes the step once",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('batchmap');
     select pgflow.add_step('batchmap', 'each', step_type => 'map');
     select pgflow.add_step('batchmap', 'sum', deps_slugs => array['each']);`,
    );
    const first = await startFlow(sql, { flowSlug: "batchmap", input: [1, 2, 3, 4] });
    const second = await startFlow(sql, { flowSlug: "batchmap", input: [10, 20] });
    const tasks = await takeTasks(sql, "batchmap");
    assert.equal(tasks.length, 6);
    const report = (t: StepTaskRecord, output: Json) => ({
      runId: t.run_id,
      stepSlug: t.step_slug,
      taskIndex: t.task_index,
      output,
    });
    // The first run's tasks all at once (shuffled, one reported twice), the second's in part.
    const firstTasks = tasks.filter((t) => t.run_id === first.run_id);
    const secondTasks = tasks.filter((t) => t.run_id === second.run_id);
    const results = await completeTasks(sql, [
      report(firstTasks[2], 30),
      report(secondTasks[0], 100),
      report(firstTasks[0], 10),
      report(firstTasks[3], null),
      report(firstTasks[1], 20),
      report(firstTasks[1], 99),
    ]);
    assert.deepEqual(results.map((r) => r.status), Array(6).fill("completed"));
    const [sum] = await takeTasks(sql, "batchmap");
    assert.equal(sum.run_id, first.run_id, "only the first run's map finished");
    assert.deepEqual(sum.input, { run: [1, 2, 3, 4], each: [10, 20, 30, null] });
    const states = await sql`
    select run_id, status, remaining_tasks from pgflow.step_states where step_slug = 'each'`;
    const byRun = Object.fromEntries(states.map((s) => [s.run_id, [s.status, s.remaining_tasks]]));
    assert.deepEqual(byRun[first.run_id], ["completed", 0]);
    assert.deepEqual(byRun[second.run_id], ["started", 1]);
    const [queue] = await sql`select (select count(*) from pgmq.a_batchmap)::int as archived`;
    assert.equal(queue.archived, 5, "each completed task's message archived once");
    await assert.rejects(
      sql`select * from pgflow.complete_tasks(array[gen_random_uuid()], '{}', '{}', '{}')`,
      /complete_tasks: run_ids, step_slugs, task_indexes and outputs must have the same length, got 1, 0, 0, 0/,
    );
  },
);

/** Each task's stored element (step_tasks.element), by task index. */
async function elements(sql: Parameters<typeof define>[0], runId: string, step: string) {
  const rows = await sql<{ element: Json | null }[]>`
    select element from pgflow.step_tasks
    where run_id = ${runId} and step_slug = ${step} order by task_index`;
  return rows.map((row) => row.element);
}

dbTest(
  "a map's tasks carry their elements from its start until they complete",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('pick');
     select pgflow.add_step('pick', 'each', step_type => 'map');
     select pgflow.create_flow('bulk');
     select pgflow.add_step('bulk', 'each', step_type => 'map');
     select pgflow.create_flow('split');
     select pgflow.add_step('split', 'list');
     select pgflow.add_step('split', 'each', deps_slugs => array['list'], step_type => 'map');`,
    );
    const root = await startFlow(sql, { flowSlug: "pick", input: [10, { a: 1 }, null, "x"] });
    assert.deepEqual(await elements(sql, root.run_id, "each"), [10, { a: 1 }, null, "x"]);
    // start_flows starts root maps itself, and writes their elements too.
    const bulk = await sql<{ run_id: string }[]>`
      select run_id from pgflow.start_flows('bulk', array['[1, [2]]', '[]', '["z"]']::jsonb[])`;
    assert.deepEqual(
      await Promise.all(bulk.map((run) => elements(sql, run.run_id, "each"))),
      [[1, [2]], [], ["z"]],
    );
    const tasks = await takeTasks(sql, "pick");
    assert.deepEqual(tasks.map((t) => t.input), [10, { a: 1 }, null, "x"]);
    await completeTask(sql, { runId: root.run_id, stepSlug: "each", taskIndex: 1, output: 1 });
    // A completed task's element is cleared: the array still holds it.
    assert.deepEqual(await elements(sql, root.run_id, "each"), [10, null, null, "x"]);
    const [{ element }] = await sql<{ element: Json | null }[]>`
      select element is null as element from pgflow.step_tasks
      where run_id = ${root.run_id} and step_slug = 'each' and task_index = 2`;
    assert.equal(element, false, "a JSON null element is stored, not SQL NULL");

    const dependent = await startFlow(sql, { flowSlug: "split", input: {} });
    const [list] = await takeTasks(sql, "split");
    await completeTask(sql, {
      runId: dependent.run_id,
      stepSlug: list.step_slug,
      taskIndex: 0,
      output: ["a", "b"],
    });
    assert.deepEqual(await elements(sql, dependent.run_id, "each"), ["a", "b"]);
    assert.deepEqual((await takeTasks(sql, "split")).map((t) => t.input), ["a", "b"]);
  },
);

dbTest(
  "a map task without a stored element (as pgflow creates them) gets it from the array",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('pick');
     select pgflow.add_step('pick', 'each', step_type => 'map');`,
    );
    const run = await startFlow(sql, { flowSlug: "pick", input: [1, 2, 3] });
    await sql`update pgflow.step_tasks set element = null
              where run_id = ${run.run_id} and task_index in (0, 2)`;
    const tasks = await takeTasks(sql, "pick");
    assert.deepEqual(tasks.map((t) => [t.task_index, t.input]), [[0, 1], [1, 2], [2, 3]]);
  },
);
