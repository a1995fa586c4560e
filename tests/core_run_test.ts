import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import {
  define,
  getRun,
  runUntilIdle,
  stepStatuses,
  takeTasks,
  WORKER_ID,
} from "./_support/drive.ts";
import { startFlow } from "../src/db/runs.ts";
import {
  completeTask,
  completeTaskAndClaim,
  completeTasks,
  completeTasksAndClaim,
  readAndStartTasks,
  readAndStartTasksWithPoll,
} from "../src/db/tasks.ts";
import { connect } from "../src/db/connect.ts";
import { eventually } from "./_support/eventually.ts";

const ANALYZE_WEBSITE = `
  SELECT pgflow.create_flow('analyze_website');
  SELECT pgflow.add_step('analyze_website', 'website');
  SELECT pgflow.add_step('analyze_website', 'sentiment', deps_slugs => ARRAY['website']);
  SELECT pgflow.add_step('analyze_website', 'summary', deps_slugs => ARRAY['website']);
  SELECT pgflow.add_step('analyze_website', 'saveToDb', deps_slugs => ARRAY['sentiment', 'summary']);
`;

dbTest(
  "the spec's analyze_website example runs to completed with the spec's inputs",
  async ({ sql }) => {
    await define(sql, ANALYZE_WEBSITE);
    const [started] = await sql`
    SELECT * FROM pgflow.start_flow(
      flow_slug => 'analyze_website',
      input => '{"url": "https://example.com"}'::jsonb)`;
    assert.equal(started.status, "started");
    assert.equal(started.remaining_steps, 4);
    assert.deepEqual(started.input, { url: "https://example.com" });
    assert.equal(started.output, null);

    const seen: Record<string, unknown> = {};
    await runUntilIdle(sql, "analyze_website", {
      website: (input) => {
        seen.website = input;
        return { content: "HTML content", status: 200 };
      },
      sentiment: (input) => {
        seen.sentiment = input;
        return { score: 0.85, label: "positive" };
      },
      summary: (input) => {
        seen.summary = input;
        return "This website discusses technology.";
      },
      saveToDb: (input) => {
        seen.saveToDb = input;
        return { status: "success" };
      },
    });

    assert.deepEqual(seen.website, { run: { url: "https://example.com" } });
    assert.deepEqual(seen.sentiment, {
      run: { url: "https://example.com" },
      website: { content: "HTML content", status: 200 },
    });
    assert.deepEqual(seen.saveToDb, {
      run: { url: "https://example.com" },
      sentiment: { score: 0.85, label: "positive" },
      summary: "This website discusses technology.",
    });

    const run = await getRun(sql, started.run_id);
    assert.equal(run.status, "completed");
    assert.equal(run.remaining_steps, 0);
    assert.deepEqual(run.output, { saveToDb: { status: "success" } });
    assert.ok(run.completed_at);
    assert.deepEqual(await stepStatuses(sql, started.run_id), {
      saveToDb: "completed",
      sentiment: "completed",
      summary: "completed",
      website: "completed",
    });

    // Every task message was archived, none left in the queue.
    const [queue] = await sql`
    select (select count(*) from pgmq.q_analyze_website)::int as queued,
           (select count(*) from pgmq.a_analyze_website)::int as archived`;
    assert.deepEqual(queue, { queued: 0, archived: 4 });
  },
);

dbTest("dependents start only when all their dependencies completed", async ({ sql }) => {
  await define(sql, ANALYZE_WEBSITE);
  const run = await startFlow(sql, { flowSlug: "analyze_website", input: { url: "u" } });
  const [website] = await takeTasks(sql, "analyze_website");
  assert.equal(website.step_slug, "website");
  assert.deepEqual(await takeTasks(sql, "analyze_website"), [], "nothing else is ready yet");

  await completeTask(sql, { runId: run.run_id, stepSlug: "website", taskIndex: 0, output: "page" });
  const parallel = await takeTasks(sql, "analyze_website");
  assert.deepEqual(parallel.map((t) => t.step_slug).sort(), ["sentiment", "summary"]);

  const sentiment = parallel.find((t) => t.step_slug === "sentiment")!;
  await completeTask(sql, { runId: run.run_id, stepSlug: "sentiment", taskIndex: 0, output: 1 });
  assert.deepEqual(await takeTasks(sql, "analyze_website"), [], "saveToDb waits for summary");
  const [state] = await sql`
    select status, remaining_deps from pgflow.step_states
    where run_id = ${run.run_id} and step_slug = 'saveToDb'`;
  assert.deepEqual(state, { status: "created", remaining_deps: 1 });
  assert.equal(sentiment.task_index, 0);

  await completeTask(sql, { runId: run.run_id, stepSlug: "summary", taskIndex: 0, output: "s" });
  const [save] = await takeTasks(sql, "analyze_website");
  assert.equal(save.step_slug, "saveToDb");
  assert.equal((await getRun(sql, run.run_id)).remaining_steps, 1);
});

dbTest(
  "a flow of root steps only runs them in parallel and outputs all of them",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('roots');
     select pgflow.add_step('roots', 'a');
     select pgflow.add_step('roots', 'b');
     select pgflow.add_step('roots', 'c');`,
    );
    const run = await startFlow(sql, { flowSlug: "roots", input: 7 });
    const tasks = await takeTasks(sql, "roots");
    assert.deepEqual(tasks.map((t) => t.step_slug).sort(), ["a", "b", "c"]);
    for (const task of tasks) assert.deepEqual(task.input, { run: 7 });
    for (const [slug, output] of [["a", 1], ["b", "two"], ["c", [3]]] as const) {
      await completeTask(sql, { runId: run.run_id, stepSlug: slug, taskIndex: 0, output });
    }
    assert.deepEqual((await getRun(sql, run.run_id)).output, { a: 1, b: "two", c: [3] });
  },
);

dbTest("multiple roots feeding one step, and run output has every leaf", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('multi');
     select pgflow.add_step('multi', 'left');
     select pgflow.add_step('multi', 'right');
     select pgflow.add_step('multi', 'join', deps_slugs => array['left', 'right']);
     select pgflow.add_step('multi', 'side', deps_slugs => array['left']);`,
  );
  const run = await startFlow(sql, { flowSlug: "multi", input: { n: 1 } });
  const inputs: Record<string, unknown> = {};
  await runUntilIdle(sql, "multi", {
    left: () => "L",
    right: () => "R",
    join: (input) => {
      inputs.join = input;
      return "J";
    },
    side: (input) => {
      inputs.side = input;
      return "S";
    },
  });
  assert.deepEqual(inputs.join, { run: { n: 1 }, left: "L", right: "R" });
  assert.deepEqual(inputs.side, { run: { n: 1 }, left: "L" });
  const done = await getRun(sql, run.run_id);
  assert.equal(done.status, "completed");
  assert.deepEqual(done.output, { join: "J", side: "S" });
});

dbTest("falsy outputs are stored and passed on as they are", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('falsy');
     select pgflow.add_step('falsy', 'zero');
     select pgflow.add_step('falsy', 'no');
     select pgflow.add_step('falsy', 'empty');
     select pgflow.add_step('falsy', 'nothing');
     select pgflow.add_step('falsy', 'sink', deps_slugs => array['zero', 'no', 'empty', 'nothing']);`,
  );
  const run = await startFlow(sql, { flowSlug: "falsy", input: null });
  let sinkInput: unknown;
  await runUntilIdle(sql, "falsy", {
    zero: () => 0,
    no: () => false,
    empty: () => "",
    nothing: () => null,
    sink: (input) => {
      sinkInput = input;
      return 0;
    },
  });
  assert.deepEqual(sinkInput, { run: null, zero: 0, no: false, empty: "", nothing: null });
  const outputs = await sql`
    select step_slug, output from pgflow.step_tasks where run_id = ${run.run_id} order by step_slug`;
  assert.deepEqual(outputs.map((r) => [r.step_slug, r.output]), [
    ["empty", ""],
    ["no", false],
    ["nothing", null],
    ["sink", 0],
    ["zero", 0],
  ]);
  assert.deepEqual((await getRun(sql, run.run_id)).output, { sink: 0 });
});

dbTest("start_flow accepts a caller-chosen run_id once", async ({ sql }) => {
  await define(sql, ANALYZE_WEBSITE);
  const runId = "5f0c6a0e-3b1f-4c4e-9a51-2f5d1c0b7a11";
  const run = await startFlow(sql, { flowSlug: "analyze_website", input: {}, runId });
  assert.equal(run.run_id, runId);
  await assert.rejects(
    startFlow(sql, { flowSlug: "analyze_website", input: {}, runId }),
    /start_flow\('analyze_website'\): run 5f0c6a0e-3b1f-4c4e-9a51-2f5d1c0b7a11 already exists/,
  );
  const [{ count }] = await sql`select count(*)::int as count from pgflow.runs`;
  assert.equal(count, 1);
});

dbTest(
  "get_run_with_states and start_flow_with_states return the run and its steps",
  async ({ sql }) => {
    await define(sql, ANALYZE_WEBSITE);
    const [{ result }] = await sql`
    select pgflow.start_flow_with_states('analyze_website', '{"url":"x"}'::jsonb) as result`;
    assert.equal(result.run.status, "started");
    assert.deepEqual(result.run.input, { url: "x" });
    assert.deepEqual(
      result.steps.map((s: { step_slug: string; status: string }) => [s.step_slug, s.status]),
      [["website", "started"], ["sentiment", "created"], ["summary", "created"], [
        "saveToDb",
        "created",
      ]],
    );
    const [{ again }] = await sql`
    select pgflow.get_run_with_states(${result.run.run_id}::uuid) as again`;
    assert.deepEqual(again, result);
  },
);

dbTest(
  "flow slugs with capitals work end to end (pgmq lower-cases table names)",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('MyFlow', timeout => 7);
     select pgflow.add_step('MyFlow', 'First');`,
    );
    const run = await startFlow(sql, { flowSlug: "MyFlow", input: 1 });
    const [task] = await takeTasks(sql, "MyFlow");
    const [{ hidden }] = await sql`
    select round(extract(epoch from vt - clock_timestamp()))::int as hidden
    from pgmq.q_myflow where msg_id = ${task.msg_id}`;
    assert.equal(hidden, 9, "start_tasks set the visibility to timeout + 2 s");
    await completeTask(sql, { runId: run.run_id, stepSlug: "First", taskIndex: 0, output: 2 });
    assert.deepEqual((await getRun(sql, run.run_id)).output, { First: 2 });
  },
);

dbTest(
  "read_and_start_tasks hides each claimed message for its own step's timeout and counts the read",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('hidden', timeout => 7);
       select pgflow.add_step('hidden', 'flow_timeout');
       select pgflow.add_step('hidden', 'own_timeout', timeout => 20);`,
    );
    await startFlow(sql, { flowSlug: "hidden", input: 1 });
    // A message of no step of the flow (put there by hand): no task starts, it keeps the claim's vt.
    await sql`select pgmq.send('hidden', '{"step_slug": "nope"}'::jsonb)`;
    const claimed = await readAndStartTasks(sql, {
      flowSlug: "hidden",
      workerId: WORKER_ID,
      vt: 30,
      qty: 10,
    });
    assert.deepEqual(claimed.map((c) => c.task.step_slug).sort(), ["flow_timeout", "own_timeout"]);
    const queue = await sql<{ step: string; hidden: number; read_ct: number }[]>`
      select message ->> 'step_slug' as step, read_ct,
             round(extract(epoch from vt - clock_timestamp()))::int as hidden
      from pgmq.q_hidden order by msg_id`;
    assert.deepEqual([...queue], [
      { step: "flow_timeout", hidden: 9, read_ct: 1 },
      { step: "own_timeout", hidden: 22, read_ct: 1 },
      { step: "nope", hidden: 30, read_ct: 1 },
    ]);
    for (const { message } of claimed) {
      assert.equal(message.read_ct, 1);
      const [row] = await sql`select vt from pgmq.q_hidden where msg_id = ${message.msg_id}`;
      assert.equal(
        new Date(message.vt).getTime(),
        row.vt.getTime(),
        "the returned vt is the set one",
      );
    }
  },
);

dbTest(
  "read_and_start_tasks_with_poll waits for a run started meanwhile and starts its task",
  async ({ sql, url }) => {
    await define(
      sql,
      `select pgflow.create_flow('polled'); select pgflow.add_step('polled', 's');`,
    );
    const poller = connect(url, { max: 1 });
    try {
      const longPoll = (maxPollSeconds: number) =>
        readAndStartTasksWithPoll(poller, {
          flowSlug: "polled",
          workerId: WORKER_ID,
          vt: 30,
          qty: 5,
          maxPollSeconds,
          pollIntervalMs: 10,
        });
      // Nothing visible and no time to wait: nothing, at once.
      const none = longPoll(0);
      assert.deepEqual(await none.started, []);

      // The poll starts first; the run is started while it waits.
      const whenWaiting = () =>
        eventually("the long poll to be waiting", async () => {
          const [row] = await sql<{ n: number }[]>`
            select count(*)::int as n from pg_stat_activity
            where query like '%read_and_start_tasks_with_poll%' and pid <> pg_backend_pid()
              and wait_event = 'PgSleep'`;
          return row.n === 1;
        });
      const poll = longPoll(30);
      await whenWaiting();
      const run = await startFlow(sql, { flowSlug: "polled", input: 7 });
      const started = await poll.started;
      assert.deepEqual(
        started.map((s) => ({ run: s.task.run_id, step: s.task.step_slug, attempt: s.attempt })),
        [{ run: run.run_id, step: "s", attempt: 1 }],
      );
      assert.deepEqual(started[0].task.input, { run: 7 });
      const [task] = await sql`
        select status, attempts_count from pgflow.step_tasks where run_id = ${run.run_id}`;
      assert.deepEqual({ ...task }, { status: "started", attempts_count: 1 });

      // A poll cancelled while it waits (as a stopping worker does) claims nothing, and the
      // connection serves the next one.
      const cancelled = longPoll(30);
      await whenWaiting();
      await cancelled.cancel();
      await assert.rejects(cancelled.started, /cancel/i);
      await startFlow(sql, { flowSlug: "polled", input: 8 });
      const next = longPoll(5);
      assert.equal((await next.started).length, 1);
    } finally {
      await poller.end();
    }
  },
);

dbTest(
  "read_and_start_tasks_with_poll refuses bad wait bounds and claims nothing",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('bounded'); select pgflow.add_step('bounded', 's');`,
    );
    await startFlow(sql, { flowSlug: "bounded", input: 1 });
    for (const [seconds, interval] of [[-1, 10], [1, 0], [null, 10], [1, null]]) {
      await assert.rejects(
        sql`select * from pgflow.read_and_start_tasks_with_poll('bounded', 30, 5,
            ${WORKER_ID}::uuid, ${seconds}::int, ${interval}::int)`,
        /read_and_start_tasks_with_poll\('bounded'\): max_poll_seconds must be >= 0 and poll_interval_ms >= 1/,
      );
    }
    await assert.rejects(
      sql`select * from pgflow.read_and_start_tasks_with_poll('bounded', 0, 5, ${WORKER_ID}::uuid, 1, 10)`,
      /qty must be >= 0 and vt >= 1/,
    );
    await assert.rejects(
      sql`select * from pgflow.read_and_start_tasks_with_poll('missing', 30, 5, ${WORKER_ID}::uuid, 1, 10)`,
      /missing/,
    );
    const [row] = await sql`
    select count(*)::int as started from pgflow.step_tasks where status <> 'queued'`;
    assert.equal(row.started, 0);
  },
);

dbTest(
  "read_and_start_tasks_with_poll looks with a probe of the queue and claims only what it finds",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('probed'); select pgflow.add_step('probed', 's');`,
    );
    // Refused at once on an empty queue too: the first look is a claim, which checks them.
    await assert.rejects(
      sql`select * from pgflow.read_and_start_tasks_with_poll('probed', 30, -1, ${WORKER_ID}::uuid, 5, 10)`,
      /qty must be >= 0 and vt >= 1/,
    );
    await assert.rejects(
      sql`select * from pgflow.read_and_start_tasks_with_poll('probed', 30, 5, null, 5, 10)`,
      /worker_id must not be NULL/,
    );
    // One second of looks every 10 ms at an empty queue: one claim, the rest probes.
    const calls = await sql.begin(async (tx) => {
      await tx`set local track_functions = 'pl'`;
      const claimed = await tx`
        select * from pgflow.read_and_start_tasks_with_poll('probed', 30, 5, ${WORKER_ID}::uuid, 1, 10)`;
      assert.equal(claimed.length, 0);
      const [row] = await tx<{ claims: number; probes: number }[]>`
        select pg_stat_get_xact_function_calls(
                 'pgflow.read_and_start_tasks(text, int, int, uuid)'::regprocedure)::int as claims,
               pg_stat_get_xact_function_calls(
                 'pgflow._queue_has_visible(text)'::regprocedure)::int as probes`;
      return row;
    });
    assert.equal(calls.claims, 1);
    assert.ok(calls.probes >= 20, `probes: ${calls.probes}`);
  },
);

dbTest("completeTasks applies a batch of reports in one statement", async ({ sql }) => {
  await define(
    sql,
    `select pgflow.create_flow('batch');
     select pgflow.add_step('batch', 'a');
     select pgflow.add_step('batch', 'b', deps_slugs => array['a']);`,
  );
  const runs = await Promise.all(
    [1, 2, 3].map((n) => startFlow(sql, { flowSlug: "batch", input: n })),
  );
  const tasks = await takeTasks(sql, "batch");
  const rows = await completeTasks(sql, [
    ...tasks.map((t) => ({ runId: t.run_id, stepSlug: "a", taskIndex: 0, output: 0 })),
    // A duplicate report inside the batch changes nothing.
    { runId: tasks[0].run_id, stepSlug: "a", taskIndex: 0, output: 99 },
  ]);
  assert.equal(rows.length, 4);
  const next = await takeTasks(sql, "batch");
  assert.deepEqual(next.map((t) => t.step_slug), ["b", "b", "b"]);
  for (const task of next) assert.equal((task.input as { a: number }).a, 0);
  await completeTasks(
    sql,
    next.map((t) => ({ runId: t.run_id, stepSlug: "b", taskIndex: 0, output: false })),
  );
  for (const run of runs) assert.deepEqual((await getRun(sql, run.run_id)).output, { b: false });
  await assert.rejects(
    completeTasks(sql, [{ runId: runs[0].run_id, stepSlug: "nope", taskIndex: 0, output: 1 }]),
    /flow 'batch' has no step 'nope'/,
  );
});

dbTest(
  "complete_task_and_claim completes a task and starts the tasks it made ready",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('claim');
       select pgflow.add_step('claim', 'a');
       select pgflow.add_step('claim', 'b', deps_slugs => array['a']);
       select pgflow.add_step('claim', 'c', deps_slugs => array['a']);`,
    );
    const run = await startFlow(sql, { flowSlug: "claim", input: 5 });
    const [a] = await takeTasks(sql, "claim");
    const claim = { workerId: WORKER_ID, vt: 30 };
    const { result, claimed } = await completeTaskAndClaim(sql, {
      ...taskKey(a),
      ...claim,
      output: 6,
      qty: 1,
    });
    assert.deepEqual(result, { status: "completed", error_message: null });
    assert.equal(claimed.length, 1, "claims no more than qty");
    const [next] = claimed;
    assert.deepEqual(next.task.input, { run: 5, a: 6 });
    assert.equal(next.attempt, 1, "the claimed task's first attempt");
    assert.deepEqual(next.message.message, {
      flow_slug: "claim",
      run_id: run.run_id,
      step_slug: next.task.step_slug,
      task_index: 0,
    });
    assert.ok(next.message.vt instanceof Date && next.message.vt.getTime() > Date.now());
    const [rest] = await takeTasks(sql, "claim");
    assert.notEqual(rest.step_slug, next.task.step_slug, "the other ready task stays for others");
    const [started] = await sql`
      select status, last_worker_id from pgflow.step_tasks
      where run_id = ${run.run_id} and step_slug = ${next.task.step_slug}`;
    assert.deepEqual(started, { status: "started", last_worker_id: WORKER_ID });
    // qty 0 only completes.
    assert.deepEqual(
      await completeTaskAndClaim(sql, { ...taskKey(rest), ...claim, output: 1, qty: 0 }),
      { result: { status: "completed", error_message: null }, claimed: [] },
    );
    await assert.rejects(
      completeTaskAndClaim(sql, { ...taskKey(rest), ...claim, output: 1, vt: 0, qty: 1 }),
      /complete_task_and_claim: qty must be >= 0 and vt >= 1, got qty 1, vt 0/,
    );
  },
);

dbTest(
  "complete_tasks_and_claim reports a batch and claims in one transaction; bad arguments change nothing",
  async ({ sql }) => {
    await define(
      sql,
      `select pgflow.create_flow('batch');
       select pgflow.add_step('batch', 'a');
       select pgflow.add_step('batch', 'b', deps_slugs => array['a']);`,
    );
    for (const input of [1, 2, 3]) await startFlow(sql, { flowSlug: "batch", input });
    const tasks = await takeTasks(sql, "batch", 2);
    const reports = tasks.map((task) => ({ ...taskKey(task), output: task.input }));
    const claim = { flowSlug: "batch", workerId: WORKER_ID, vt: 30 };

    // A bad claim argument is refused before any report is applied.
    await assert.rejects(
      completeTasksAndClaim(sql, reports, { ...claim, qty: -1 }),
      /complete_tasks_and_claim: qty must be >= 0 and vt >= 1, got qty -1, vt 30/,
    );
    await assert.rejects(
      completeTasksAndClaim(sql, reports, { ...claim, flowSlug: "nope", qty: 1 }),
      /complete_tasks_and_claim: flow 'nope' does not exist/,
    );
    const [{ n }] = await sql`
      select count(*)::int as n from pgflow.step_tasks where status = 'completed'`;
    assert.equal(n, 0, "nothing was completed");

    // Two reports: each readies a "b"; with the third run's "a", three tasks are visible.
    const { results, claimed } = await completeTasksAndClaim(sql, reports, { ...claim, qty: 2 });
    assert.deepEqual(results, [
      { status: "completed", error_message: null },
      { status: "completed", error_message: null },
    ]);
    assert.equal(claimed.length, 2, "claims no more than qty");
    assert.ok(claimed.every((c) => c.attempt === 1));
    const rest = await takeTasks(sql, "batch");
    assert.equal(rest.length, 1, "the third visible task stays for others");
  },
);

function taskKey(task: { run_id: string; step_slug: string; task_index: number }) {
  return { runId: task.run_id, stepSlug: task.step_slug, taskIndex: task.task_index };
}
