/**
 * pgflow.start_flows: many runs in one call, set-based, leaving exactly what start_flow once
 * per input leaves (runs, step states, tasks, messages, events), and refusing bad input
 * without writing anything.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import { loadSupabaseStandIns } from "./_support/supabase_standin.ts";
import type { Sql } from "../src/db/connect.ts";
import type { Json } from "../src/db/types.ts";

async function defineFlows(sql: Sql) {
  await sql.unsafe(`
    select pgflow.create_flow('bulk');
    select pgflow.add_step('bulk', 'fetch');
    select pgflow.add_step('bulk', 'each', step_type => 'map');
    select pgflow.add_step('bulk', 'later', start_delay => 30);
    select pgflow.add_step('bulk', 'join', deps_slugs => array['fetch', 'each']);`);
}

/** Everything a run left, ids and timestamps aside, with its messages in task order. */
async function stateOf(sql: Sql, runId: string) {
  const [run] =
    await sql`select status, input, output, remaining_steps from pgflow.runs where run_id = ${runId}`;
  const steps = await sql`
    select step_slug, status, initial_tasks, remaining_tasks, remaining_deps,
           started_at is not null as started, completed_at is not null as completed
    from pgflow.step_states where run_id = ${runId} order by step_slug`;
  const tasks = await sql`
    select t.step_slug, t.task_index, t.status, m.message,
           m.vt > clock_timestamp() + interval '20 seconds' as delayed
    from pgflow.step_tasks t join pgmq.q_bulk m on m.msg_id = t.message_id
    where t.run_id = ${runId} order by t.step_slug, t.task_index`;
  return {
    run,
    steps: [...steps],
    tasks: [...tasks].map((t) => ({ ...t, message: { ...t.message, run_id: "-" } })),
  };
}

const INPUTS: Json[] = [[1, 2, 3], [], [4]];

dbTest("start_flows leaves what start_flow leaves for each input, events included", async (db) => {
  const { sql } = db;
  await defineFlows(sql);
  const listener = db.connect(1);
  const events: { run_id: string; event: string }[] = [];
  const oneByOne = [];
  for (const input of INPUTS) {
    const [run] = await sql`select run_id from pgflow.start_flow('bulk', (${
      JSON.stringify(input)
    }::text)::jsonb)`;
    oneByOne.push(run.run_id as string);
  }
  const ids = INPUTS.map(() => crypto.randomUUID());
  for (const id of ids) {
    await listener.listen(`pgflow:run:${id}`, (payload) => events.push(JSON.parse(payload)));
  }
  const bulk = await sql`
    select run_id, status from pgflow.start_flows('bulk',
      array(select (e)::jsonb from unnest(${INPUTS.map((i) => JSON.stringify(i))}::text[]) e),
      ${ids}::uuid[])`;
  assert.deepEqual(bulk.map((r) => r.run_id), ids, "runs come back in input order");

  for (let i = 0; i < INPUTS.length; i++) {
    assert.deepEqual(await stateOf(sql, ids[i]), await stateOf(sql, oneByOne[i]), `input ${i}`);
  }
  // Per run: run:started first, then each started (or, for the empty map, completed) step.
  await eventually("events of three runs", () => events.length >= 12);
  const byRun = (id: string) => events.filter((e) => e.run_id === id).map((e) => e.event);
  assert.deepEqual(byRun(ids[0]), [
    "run:started",
    "step:fetch:started",
    "step:each:started",
    "step:later:started",
  ]);
  assert.deepEqual(byRun(ids[1]), [
    "run:started",
    "step:each:completed",
    "step:fetch:started",
    "step:later:started",
  ]);
});

dbTest(
  "on Supabase, start_flows sends each run the realtime events start_flow sends",
  async (db) => {
    const { sql } = db;
    await loadSupabaseStandIns(db.url, sql);
    await defineFlows(sql);
    const oneByOne: string[] = [];
    for (const input of INPUTS) {
      const [run] = await sql`select run_id from pgflow.start_flow('bulk', (${
        JSON.stringify(input)
      }::text)::jsonb)`;
      oneByOne.push(run.run_id as string);
    }
    const bulk = (await sql`
    select run_id from pgflow.start_flows('bulk',
      array(select (e)::jsonb from unnest(${INPUTS.map((i) => JSON.stringify(i))}::text[]) e))`)
      .map((r) => r.run_id as string);

    // One transaction's messages share inserted_at and have random ids: their physical order
    // is the order they were sent in (nothing else writes the table here).
    const sent = async (runId: string) =>
      (await sql<{ event: string; payload: Record<string, Json> }[]>`
      select event, payload from realtime.messages
      where topic = ${"pgflow:run:" + runId} order by ctid`)
        .map(({ event, payload }) => {
          const { id: _id, run_id: _run, started_at: _s, completed_at: _c, ...rest } = payload;
          return { event, payload: rest };
        });
    for (let i = 0; i < INPUTS.length; i++) {
      const expected = await sent(oneByOne[i]);
      assert.ok(expected.length >= 2, `input ${i}: start_flow sent its events`);
      assert.deepEqual(await sent(bulk[i]), expected, `input ${i}`);
    }
  },
);

dbTest("start_flows refuses bad input and writes nothing", async ({ sql }) => {
  await defineFlows(sql);
  const attempts: [string, RegExp][] = [
    [`select pgflow.start_flows('nope', array['[]'::jsonb])`, /flow 'nope' does not exist/],
    [`select pgflow.start_flows('bulk', null)`, /inputs must not be NULL/],
    [`select pgflow.start_flows('bulk', array['[]'::jsonb, null])`, /inputs\[2\] is SQL NULL/],
    [
      `select pgflow.start_flows('bulk', array['[1]'::jsonb, '{}'::jsonb])`,
      /root map step 'each'.*inputs\[2\] is object/,
    ],
    [
      `select pgflow.start_flows('bulk', array['[]'::jsonb], array[gen_random_uuid(), gen_random_uuid()])`,
      /run_ids has 2 elements but inputs has 1/,
    ],
    [
      `select pgflow.start_flows('bulk', array['[1]'::jsonb, '[2]'::jsonb],
         array['55555555-5555-4555-8555-555555555555'::uuid, '55555555-5555-4555-8555-555555555555'::uuid])`,
      /already exists, or run_ids repeats one/,
    ],
  ];
  for (const [statement, message] of attempts) {
    await assert.rejects(sql.unsafe(statement), message, statement);
  }
  const [counts] = await sql`
    select (select count(*) from pgflow.runs)::int as runs,
           (select count(*) from pgflow.step_tasks)::int as tasks,
           (select count(*) from pgmq.q_bulk)::int as messages`;
  assert.deepEqual(counts, { runs: 0, tasks: 0, messages: 0 });
  assert.deepEqual([...await sql`select * from pgflow.start_flows('bulk', '{}'::jsonb[])`], []);
});
