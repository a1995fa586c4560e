/**
 * SQL core benchmark: the hot paths (start_tasks, complete_task) must not get
 * slower as history accumulates or as a map gets wider. Prints a table and
 * writes bench/results/core.json. Numbers are ratios on purpose: they hold
 * across machines better than absolute times.
 */
import type { Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import { completeTask, startTasks } from "../src/db/tasks.ts";
import { createTestDb } from "../tests/_support/db.ts";

const WORKER = "11111111-1111-4111-8111-111111111111";

async function readAll(sql: Sql, queue: string, qty: number): Promise<number[]> {
  const rows = await sql<{ msg_id: number }[]>`select msg_id from pgmq.read(${queue}, 60, ${qty})`;
  return rows.map((r) => r.msg_id);
}

/** Mean ms per one-step run: start_flow, read, start_tasks, complete_task. */
async function oneStepRuns(sql: Sql, count: number): Promise<number> {
  const began = performance.now();
  for (let i = 0; i < count; i++) {
    await startFlow(sql, { flowSlug: "one", input: i });
    const ids = await readAll(sql, "one", 1);
    const [task] = await startTasks(sql, { flowSlug: "one", msgIds: ids, workerId: WORKER });
    await completeTask(sql, { runId: task.run_id, stepSlug: "s", taskIndex: 0, output: i });
  }
  return (performance.now() - began) / count;
}

/** Adds `runs` finished one-step runs (with states, tasks, archived messages) in bulk. */
async function addHistory(sql: Sql, runs: number): Promise<void> {
  await sql.unsafe(`
    with r as (
      insert into pgflow.runs (run_id, flow_slug, status, input, output, remaining_steps, completed_at)
      select gen_random_uuid(), 'one', 'completed', to_jsonb(i), jsonb_build_object('s', i), 0, now()
      from generate_series(1, ${runs}) i returning run_id, input
    ), s as (
      insert into pgflow.step_states (flow_slug, run_id, step_slug, status, initial_tasks, remaining_tasks, started_at, completed_at)
      select 'one', run_id, 's', 'completed', 1, 0, now(), now() from r returning run_id
    )
    insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, status, attempts_count, output, message_id, started_at, completed_at)
    select 'one', run_id, 's', 0, 'completed', 1, '1', -row_number() over (), now(), now() from s;
    analyze;`);
}

async function historyBench(sql: Sql) {
  await sql.unsafe(`select pgflow.create_flow('one'); select pgflow.add_step('one', 's');`);
  await oneStepRuns(sql, 50); // warm-up
  const before = await oneStepRuns(sql, 300);
  await addHistory(sql, 100_000);
  const after = await oneStepRuns(sql, 300);
  return { before, after, ratio: after / before };
}

async function mapWidthBench(sql: Sql, width: number) {
  await sql.unsafe(`
    select pgflow.create_flow('wide');
    select pgflow.add_step('wide', 'list');
    select pgflow.add_step('wide', 'each', deps_slugs => array['list'], step_type => 'map');
    select pgflow.add_step('wide', 'total', deps_slugs => array['each']);`);
  const run = await startFlow(sql, { flowSlug: "wide", input: width });
  const [list] = await startTasks(sql, {
    flowSlug: "wide",
    msgIds: await readAll(sql, "wide", 1),
    workerId: WORKER,
  });
  const began = performance.now();
  await completeTask(sql, {
    runId: run.run_id,
    stepSlug: list.step_slug,
    taskIndex: 0,
    output: Array.from({ length: width }, (_, i) => ({ item: i, label: `element ${i}` })),
  });
  const fanOutMs = performance.now() - began;

  const batch = 50;
  const startMs: number[] = [];
  const completeMs: number[] = [];
  for (let done = 0; done < width; done += batch) {
    let t = performance.now();
    const tasks = await startTasks(sql, {
      flowSlug: "wide",
      msgIds: await readAll(sql, "wide", batch),
      workerId: WORKER,
    });
    startMs.push((performance.now() - t) / tasks.length);
    t = performance.now();
    for (const task of tasks) {
      await completeTask(sql, {
        runId: task.run_id,
        stepSlug: "each",
        taskIndex: task.task_index,
        output: task.task_index,
      });
    }
    completeMs.push((performance.now() - t) / tasks.length);
  }
  const edge = Math.max(1, Math.floor(startMs.length / 10));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  // The last batch includes the step's completion (aggregation + starting `total`).
  return {
    width,
    fanOutMs,
    startFirst: mean(startMs.slice(0, edge)),
    startLast: mean(startMs.slice(-edge)),
    completeFirst: mean(completeMs.slice(0, edge)),
    completeLast: mean(completeMs.slice(-edge - 1, -1)),
    finalBatch: completeMs.at(-1)! * batch,
  };
}

export async function runCoreBench() {
  const historyDb = await createTestDb();
  const history = await historyBench(historyDb.sql).finally(() => historyDb.drop());
  const mapDb = await createTestDb();
  const map = await mapWidthBench(mapDb.sql, 10_000).finally(() => mapDb.drop());
  const f = (n: number) => n.toFixed(2);
  console.log("\nSQL core hot paths (one connection, ms per operation)");
  console.table({
    "one-step run, empty tables": { ms: f(history.before) },
    "one-step run, +100k finished runs": { ms: f(history.after), ratio: f(history.ratio) },
    "map 10k: fan-out (complete list, create 10k tasks)": { ms: f(map.fanOutMs) },
    "map 10k: start_tasks per task, first 10%": { ms: f(map.startFirst) },
    "map 10k: start_tasks per task, last 10%": {
      ms: f(map.startLast),
      ratio: f(map.startLast / map.startFirst),
    },
    "map 10k: complete_task, first 10%": { ms: f(map.completeFirst) },
    "map 10k: complete_task, last 10%": {
      ms: f(map.completeLast),
      ratio: f(map.completeLast / map.completeFirst),
    },
    "map 10k: last batch of 50 incl. step completion": { ms: f(map.finalBatch) },
  });
  return { history, map };
}

if (import.meta.main) {
  const results = await runCoreBench();
  await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
  await Deno.writeTextFile(
    new URL("./results/core.json", import.meta.url),
    JSON.stringify(results, null, 2),
  );
  Deno.exit(0);
}
