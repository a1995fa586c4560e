/**
 * start_flow's two ways to start a run. A flow whose root steps are all single steps without a
 * condition starts them as it creates their states; a root condition or a root map takes the
 * settling path (start_ready_steps). Both must leave the same rows, messages, queue wake-ups
 * and events: these tests start one flow each way, alike but for a root condition every input
 * meets, and compare everything.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import { loadSupabaseStandIns } from "./_support/supabase_standin.ts";
import type { Sql } from "../src/db/connect.ts";
import type { Json } from "../src/db/types.ts";
import { listenForWakeUps } from "./_support/wakeups.ts";

/** `direct` starts its roots directly; `settled` is the same flow but for a condition on `fetch`. */
async function defineFlows(sql: Sql) {
  for (const [flow, condition] of [["direct", "null"], ["settled", `'{}'::jsonb`]]) {
    await sql.unsafe(`
      select pgflow.create_flow('${flow}');
      select pgflow.add_step('${flow}', 'fetch', required_input_pattern => ${condition});
      select pgflow.add_step('${flow}', 'later', start_delay => 30);
      select pgflow.add_step('${flow}', 'join', deps_slugs => array['fetch', 'later']);
      select pgflow.add_step('${flow}', 'each', deps_slugs => array['join'], step_type => 'map');`);
  }
}

const INPUT = { url: "https://example.com", n: 3 };

async function start(sql: Sql, flow: string): Promise<Record<string, Json>> {
  const [run] = await sql`select * from pgflow.start_flow(${flow}, ${sql.json(INPUT)})`;
  return run as Record<string, Json>;
}

interface TaskRow {
  step_slug: string;
  task_index: number;
  status: string;
  attempts_count: number;
  queued_with_run: boolean;
  message: Record<string, Json>;
  read_ct: number;
  delayed: boolean;
}

/**
 * Everything a run left, ids and flow slug aside, with its messages in task order; its times
 * as whether each is the run's start (one transaction: every time it stamps is that moment).
 */
async function stateOf(sql: Sql, flow: string, runId: string) {
  const [run] = await sql`
    select status, input, output, remaining_steps, completed_at is null as open
    from pgflow.runs where run_id = ${runId}`;
  const steps = await sql`
    select ss.step_slug, ss.status, ss.initial_tasks, ss.remaining_tasks, ss.remaining_deps,
           ss.created_at = r.started_at as created_with_run,
           coalesce(ss.started_at = r.started_at, false) as started_with_run,
           ss.started_at is null as not_started, ss.completed_at is not null as completed
    from pgflow.step_states ss join pgflow.runs r using (run_id)
    where ss.run_id = ${runId} order by ss.step_slug`;
  const tasks = await sql.unsafe<TaskRow[]>(
    `select t.step_slug, t.task_index, t.status, t.attempts_count,
            t.queued_at = r.started_at as queued_with_run, m.message, m.read_ct,
            m.vt > clock_timestamp() + interval '20 seconds' as delayed
     from pgflow.step_tasks t join pgflow.runs r using (run_id)
     join pgmq.q_${flow} m on m.msg_id = t.message_id
     where t.run_id = $1 order by t.step_slug, t.task_index`,
    [runId],
  );
  return {
    run,
    steps: [...steps],
    tasks: [...tasks].map((t) => ({
      ...t,
      message: { ...t.message, run_id: "-", flow_slug: "-" },
    })),
  };
}

dbTest(
  "start_flow starts single root steps as it creates them, as the settling path does",
  async (db) => {
    const { sql } = db;
    await defineFlows(sql);
    const wakeUps = await listenForWakeUps(db.connect(1), ["direct", "settled"]);
    const direct = await start(sql, "direct");
    const settled = await start(sql, "settled");

    assert.deepEqual(
      { ...direct, run_id: "-", flow_slug: "-", started_at: "-" },
      { ...settled, run_id: "-", flow_slug: "-", started_at: "-" },
      "start_flow returns the same run row",
    );
    const state = await stateOf(sql, "direct", direct.run_id as string);
    assert.deepEqual(state, await stateOf(sql, "settled", settled.run_id as string));
    // The comparison means something only if the roots did start.
    assert.deepEqual(
      state.steps.map((s) => [s.step_slug, s.status]),
      [["each", "created"], ["fetch", "started"], ["join", "created"], ["later", "started"]],
    );
    assert.deepEqual(state.tasks.map((t) => [t.step_slug, t.delayed]), [["fetch", false], [
      "later",
      true,
    ]]);
    // One wake-up each (for `fetch`; `later`'s message is not visible yet).
    assert.deepEqual(await wakeUps(sql), { direct: 1, settled: 1 });
  },
);

dbTest("a start whose only root step is delayed wakes no worker, on either path", async (db) => {
  const { sql } = db;
  for (const [flow, condition] of [["late_direct", "null"], ["late_settled", `'{}'::jsonb`]]) {
    await sql.unsafe(`
      select pgflow.create_flow('${flow}');
      select pgflow.add_step('${flow}', 'later', start_delay => 30,
                             required_input_pattern => ${condition});
      select pgflow.add_step('${flow}', 'after', deps_slugs => array['later']);`);
  }
  const wakeUps = await listenForWakeUps(db.connect(1), ["late_direct", "late_settled"]);
  await start(sql, "late_direct");
  await start(sql, "late_settled");
  assert.deepEqual(await wakeUps(sql), { late_direct: 0, late_settled: 0 });
});

/** A run's start time as its events carry it (JSON text of the timestamptz). */
async function startedAtInEvents(sql: Sql, runId: Json): Promise<string> {
  const [{ at }] = await sql`
    select to_jsonb(started_at) #>> '{}' as at from pgflow.runs where run_id = ${String(runId)}`;
  return at as string;
}

dbTest("start_flow's direct start sends the settling start's events, in order", async (db) => {
  const { sql } = db;
  const listener = db.connect(1);
  const notified: Record<string, string[]> = {};
  await defineFlows(sql);
  const ids = { direct: crypto.randomUUID(), settled: crypto.randomUUID() };
  const bodies: Record<string, Record<string, Json>[]> = {};
  for (const [flow, id] of Object.entries(ids)) {
    await listener.listen(`pgflow:run:${id}`, (payload) => {
      (bodies[flow] ??= []).push(JSON.parse(payload));
    });
    await sql`select pgflow.start_flow(${flow}, ${sql.json(INPUT)}, ${id}::uuid)`;
  }
  await eventually("events of both runs", () => (bodies.settled?.length ?? 0) >= 3);
  for (const [flow, id] of Object.entries(ids)) {
    // Every event carries the run's start as its started_at.
    const startedAt = await startedAtInEvents(sql, id);
    notified[flow] = bodies[flow].map(({ run_id: _r, flow_slug: _f, started_at, ...rest }) =>
      JSON.stringify({
        ...rest,
        started_at: started_at === startedAt ? "the run's start" : started_at,
      })
    );
  }
  assert.deepEqual(notified.direct, notified.settled);
  assert.deepEqual(notified.direct.map((e) => JSON.parse(e).event), [
    "run:started",
    "step:fetch:started",
    "step:later:started",
  ]);
});

dbTest(
  "on Supabase, start_flow's direct start sends the settling start's realtime events",
  async (db) => {
    const { sql } = db;
    await loadSupabaseStandIns(db.url, sql);
    await defineFlows(sql);
    const direct = await start(sql, "direct");
    const settled = await start(sql, "settled");
    // One transaction's messages share inserted_at and have random ids: their physical order is
    // the order they were sent in (nothing else writes the table here).
    const sent = async (runId: Json) => {
      const startedAt = await startedAtInEvents(sql, runId);
      return (await sql<{ event: string; payload: Record<string, Json> }[]>`
        select event, payload from realtime.messages
        where topic = ${"pgflow:run:" + runId} order by ctid`)
        .map(({ event, payload }) => {
          const { id: _id, run_id: _run, flow_slug: _flow, started_at, ...rest } = payload;
          return {
            event,
            payload: {
              ...rest,
              started_at: started_at === startedAt ? "the run's start" : started_at,
            },
          };
        });
    };
    const expected = await sent(settled.run_id);
    assert.deepEqual(expected.map((e) => e.event), [
      "run:started",
      "step:fetch:started",
      "step:later:started",
    ]);
    assert.deepEqual(await sent(direct.run_id), expected);
  },
);

dbTest("start_flow refuses bad input on either path and writes nothing", async ({ sql }) => {
  await defineFlows(sql);
  const id = "66666666-6666-4666-8666-666666666666";
  await sql`select pgflow.start_flow('direct', '{}'::jsonb, ${id}::uuid)`;
  const attempts: [string, RegExp][] = [
    [
      `select pgflow.start_flow('nope', '{}'::jsonb)`,
      /start_flow\('nope'\): flow 'nope' does not exist/,
    ],
    [
      `select pgflow.start_flow('direct', null)`,
      /start_flow\('direct'\): input must not be SQL NULL/,
    ],
    [
      `select pgflow.start_flow('settled', null)`,
      /start_flow\('settled'\): input must not be SQL NULL/,
    ],
    [`select pgflow.start_flow('direct', '{}'::jsonb, '${id}'::uuid)`, /run 6666.* already exists/],
    [
      `select pgflow.start_flow('settled', '{}'::jsonb, '${id}'::uuid)`,
      /run 6666.* already exists/,
    ],
  ];
  for (const [statement, message] of attempts) {
    await assert.rejects(sql.unsafe(statement), message, statement);
  }
  await sql`select pgflow.create_flow('empty')`;
  await assert.rejects(
    sql`select pgflow.start_flow('empty', '{}'::jsonb)`,
    /start_flow\('empty'\): the flow has no steps/,
  );
  const [counts] = await sql`
    select (select count(*) from pgflow.runs)::int as runs,
           (select count(*) from pgflow.step_states)::int as states,
           (select count(*) from pgflow.step_tasks)::int as tasks,
           (select count(*) from pgmq.q_direct)::int + (select count(*) from pgmq.q_settled)::int
             as messages`;
  assert.deepEqual(counts, { runs: 1, states: 4, tasks: 2, messages: 2 });
});
