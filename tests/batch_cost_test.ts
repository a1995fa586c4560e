/**
 * A claim or a batch of reports costs the same whatever the backlog: the map's width, the
 * number of started runs. A worker's connection keeps the plans of the engine's statements
 * from its first calls, often made while the tables were small. Such plans once read every
 * started task of a wide map on each claim and each batch of reports (a map's cost grew with
 * the square of its width), every started run on each report, and every message of the queue on
 * each claim (draining a queue grew with the square of its length), and every cancelled run on
 * each worker's check for cancelled runs. Here the plans are generic
 * and made on small tables, then the rows one batch reads are counted.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, WORKER_ID } from "./_support/drive.ts";
import type { Sql } from "../src/db/connect.ts";

const BATCH = 10;
/**
 * At most this many rows of a table read per task of a batch: each is a handful of key
 * lookups (a report reads its run about seven times: lock, checks, count-down, completion).
 */
const ROWS_PER_TASK = 10;

type Reserved = Awaited<ReturnType<Sql["reserve"]>>;
type Task = { run_id: string; step_slug: string; task_index: number };

function claim(conn: Reserved, flow: string): Promise<Task[]> {
  return conn<Task[]>`
    select run_id, step_slug, task_index
    from pgflow.read_and_start_tasks(${flow}, 30, ${BATCH}::int, ${WORKER_ID}::uuid)`;
}

async function report(conn: Reserved, tasks: Task[]): Promise<void> {
  await conn`
    select count(*) from pgflow.complete_tasks(
      ${tasks.map((t) => t.run_id)}::uuid[],
      ${tasks.map((t) => t.step_slug)}::text[],
      ${tasks.map((t) => t.task_index)}::int[],
      ${tasks.map((t) => JSON.stringify(t.task_index))}::text[]::jsonb[])`;
}

async function drain(conn: Reserved, flow: string): Promise<void> {
  for (let tasks = await claim(conn, flow); tasks.length > 0; tasks = await claim(conn, flow)) {
    await report(conn, tasks);
  }
}

/** Rows of a table this backend has read and not yet reported to the statistics. */
async function rowsRead(conn: Reserved, table: string): Promise<number> {
  const [row] = await conn<{ n: number }[]>`
    select (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::int as n
    from pg_stat_xact_user_tables where relid = ${table}::regclass`;
  return row?.n ?? 0;
}

/**
 * Pages of a table's indexes this backend's transaction has read: an index-only scan reads no
 * row, so rowsRead does not see it.
 */
async function indexPagesRead(conn: Reserved, table: string): Promise<number> {
  const [row] = await conn<{ n: number }[]>`
    select coalesce(sum(pg_stat_get_xact_blocks_fetched(i.indexrelid)), 0)::int as n
    from pg_index i where i.indrelid = ${table}::regclass`;
  return row.n;
}

/** Counters of this backend's statistics not yet reported, by name. */
type Counters = Record<string, () => Promise<number>>;

/**
 * How much each counter goes up while `what` runs. Inside one transaction: the counters also
 * hold earlier transactions' unflushed counts, but nothing is flushed before it ends.
 */
async function countedDuring<T>(
  conn: Reserved,
  counters: Counters,
  what: () => Promise<T>,
): Promise<{ result: T; counts: Record<string, number> }> {
  const names = Object.keys(counters);
  const read = () => Promise.all(names.map((name) => counters[name]()));
  await conn`begin`;
  try {
    const before = await read();
    const result = await what();
    const after = await read();
    return {
      result,
      counts: Object.fromEntries(names.map((name, i) => [name, after[i] - before[i]])),
    };
  } finally {
    await conn`commit`;
  }
}

/** Rows of `table` read by one claim and by the batch of reports of what it claimed. */
async function readsOfOneBatch(conn: Reserved, flow: string, table: string) {
  const counters = { rows: () => rowsRead(conn, table) };
  const claimed = await countedDuring(conn, counters, () => claim(conn, flow));
  assert.equal(claimed.result.length, BATCH);
  const reported = await countedDuring(conn, counters, () => report(conn, claimed.result));
  return { claim: claimed.counts.rows, report: reported.counts.rows };
}

const ONE_STEP_FLOW = `select pgflow.create_flow('one'); select pgflow.add_step('one', 's');`;
const DIAMOND_FLOW = `select pgflow.create_flow('dia'); select pgflow.add_step('dia', 'a');
                      select pgflow.add_step('dia', 'b', array['a']);
                      select pgflow.add_step('dia', 'c', array['a']);
                      select pgflow.add_step('dia', 'd', array['b', 'c']);`;
const WIDE_MAP_FLOW = `select pgflow.create_flow('wide');
                       select pgflow.add_step('wide', 'each', step_type => 'map');`;

/** A connection whose plans are generic (as after five calls) from its first call. */
async function genericPlans(sql: Sql): Promise<Reserved> {
  const conn = await sql.reserve();
  await conn`set plan_cache_mode = force_generic_plan`;
  return conn;
}

/**
 * How the plans are made: on small tables never analysed (a new database), or on small tables
 * whose statistics say so (autovacuum analysed them early), so that a key lookup was planned as a
 * scan of a one-page table.
 */
const WARM_UPS = [
  { name: "", analyze: false },
  { name: ", after an ANALYZE of the small tables", analyze: true },
];

for (const warmUp of WARM_UPS) {
  dbTest(
    `a claim and a batch of reports of a wide map read only their own tasks${warmUp.name}`,
    async ({ sql }) => {
      await define(sql, WIDE_MAP_FLOW);
      const conn = await genericPlans(sql);
      try {
        // Plans made now, on a map of 1,000.
        await conn`select pgflow.start_flow('wide', (select jsonb_agg(i) from generate_series(1, 1000) i))`;
        await drain(conn, "wide");
        if (warmUp.analyze) await sql`analyze`;
        await conn`select pgflow.start_flow('wide', (select jsonb_agg(i) from generate_series(1, 3000) i))`;
        // A few batches first, so finished tasks lie before the next ones.
        for (let i = 0; i < 5; i++) await report(conn, await claim(conn, "wide"));

        const reads = await readsOfOneBatch(conn, "wide", "pgflow.step_tasks");
        const most = ROWS_PER_TASK * BATCH;
        assert.ok(reads.claim <= most, `the claim read ${reads.claim} tasks for ${BATCH}`);
        assert.ok(reads.report <= most, `the reports read ${reads.report} tasks for ${BATCH}`);
      } finally {
        conn.release();
      }
    },
  );

  dbTest(
    `a batch of reports reads only its own runs, however many runs are started${warmUp.name}`,
    async ({ sql }) => {
      await define(sql, ONE_STEP_FLOW);
      const conn = await genericPlans(sql);
      try {
        // Plans made now, on a few runs.
        await conn`select pgflow.start_flow('one', to_jsonb(i)) from generate_series(1, 30) i`;
        await drain(conn, "one");
        if (warmUp.analyze) await sql`analyze`;
        await conn`select pgflow.start_flow('one', to_jsonb(i)) from generate_series(1, 3000) i`;

        const reads = await readsOfOneBatch(conn, "one", "pgflow.runs");
        const most = ROWS_PER_TASK * BATCH;
        assert.ok(reads.claim <= most, `the claim read ${reads.claim} runs for ${BATCH} tasks`);
        assert.ok(reads.report <= most, `the reports read ${reads.report} runs for ${BATCH} tasks`);
      } finally {
        conn.release();
      }
    },
  );

  dbTest(
    `a claim reads only the messages it claims, however long the queue${warmUp.name}`,
    async ({ sql }) => {
      await define(sql, ONE_STEP_FLOW);
      const conn = await genericPlans(sql);
      try {
        // Plans made now, on a queue of one message.
        await conn`select pgflow.start_flow('one', '1')`;
        await drain(conn, "one");
        if (warmUp.analyze) await sql`analyze`;
        await conn`select count(*) from pgflow.start_flows('one',
                     array(select to_jsonb(i) from generate_series(1, 3000) i))`;

        const reads = await readsOfOneBatch(conn, "one", "pgmq.q_one");
        const most = ROWS_PER_TASK * BATCH;
        assert.ok(reads.claim <= most, `the claim read ${reads.claim} messages for ${BATCH}`);
      } finally {
        conn.release();
      }
    },
  );

  dbTest(
    `a worker's check for cancelled runs reads only the runs it asks about${warmUp.name}`,
    async ({ sql }) => {
      await define(sql, ONE_STEP_FLOW);
      const conn = await genericPlans(sql);
      const cancelledOf = async (ids: string[]) =>
        (await conn<{ id: string }[]>`select id from pgflow.cancelled_runs(${ids}::uuid[]) as id`)
          .map((row) => row.id);
      try {
        // Plans made now, on two runs, one of them cancelled.
        const [first, second] = await conn<{ run_id: string }[]>`
          select run_id from pgflow.start_flows('one', array['1', '2']::jsonb[])`;
        await conn`select pgflow.cancel_run(${first.run_id}::uuid)`;
        assert.deepEqual(await cancelledOf([first.run_id, second.run_id]), [first.run_id]);
        if (warmUp.analyze) await sql`analyze`;
        // Many cancelled runs (written directly: how they were cancelled does not matter here).
        await conn`insert into pgflow.runs (flow_slug, input, status, remaining_steps, started_at,
                                            cancelled_at)
                   select 'one', to_jsonb(i), 'cancelled', 1, now(), now()
                   from generate_series(1, 30000) i`;
        const asked = await conn<{ run_id: string }[]>`
          select run_id from pgflow.start_flows('one',
            array(select to_jsonb(i) from generate_series(1, ${BATCH}) i))`;
        await conn`select pgflow.cancel_run(${asked[0].run_id}::uuid)`;

        const { result: cancelled, counts: { rows, pages } } = await countedDuring(
          conn,
          {
            rows: () => rowsRead(conn, "pgflow.runs"),
            pages: () => indexPagesRead(conn, "pgflow.runs"),
          },
          () => cancelledOf(asked.map((r) => r.run_id)),
        );
        assert.deepEqual(cancelled, [asked[0].run_id]);
        assert.ok(rows <= BATCH, `the check read ${rows} runs for ${BATCH}`);
        // A key lookup reads a page per level of the index (two or three here).
        assert.ok(pages <= 4 * BATCH, `the check read ${pages} index pages for ${BATCH} runs`);
      } finally {
        conn.release();
      }
    },
  );

  dbTest(
    `one report through complete_task reads only its own task and run${warmUp.name}`,
    async ({ sql }) => {
      await define(sql, ONE_STEP_FLOW);
      const conn = await genericPlans(sql);
      const completeOne = async () => {
        const [task] = await conn<Task[]>`
          select run_id, step_slug, task_index
          from pgflow.read_and_start_tasks('one', 30, 1, ${WORKER_ID}::uuid)`;
        await conn`select status from pgflow.complete_task(${task.run_id}::uuid, ${task.step_slug},
                                                           ${task.task_index}::int, '1'::jsonb)`;
      };
      try {
        // Plans made now, on one run.
        await conn`select pgflow.start_flow('one', '1')`;
        await completeOne();
        if (warmUp.analyze) await sql`analyze`;
        await conn`select pgflow.start_flow('one', to_jsonb(i)) from generate_series(1, 3000) i`;

        for (const table of ["pgflow.step_tasks", "pgflow.runs"]) {
          const { counts: { rows } } = await countedDuring(
            conn,
            { rows: () => rowsRead(conn, table) },
            completeOne,
          );
          assert.ok(rows <= ROWS_PER_TASK * BATCH, `one claim and report read ${rows} of ${table}`);
        }
      } finally {
        conn.release();
      }
    },
  );
}

/**
 * Plans made while `runs` held one run, just analysed: PostgreSQL then looked a run up by id
 * through whichever run-list index had the run id as a column (reading the whole index on each
 * lookup, since the id was not its first column) rather than through the primary key, and made
 * the batch's updates of runs, step states and tasks read their whole primary keys (a nested loop
 * with the table outside; with no run analysed too, for the batch start of ready steps).
 */
for (const runsWhenAnalysed of [0, 1]) {
  dbTest(
    `each report and start reads runs by key, with plans made on ${runsWhenAnalysed} analysed run(s)`,
    async ({ sql }) => {
      await define(sql, ONE_STEP_FLOW + DIAMOND_FLOW);
      const conn = await genericPlans(sql);
      try {
        if (runsWhenAnalysed > 0) await conn`select pgflow.start_flow('one', '0')`;
        await sql`analyze`;
        // Plans made now.
        await conn`select pgflow.start_flow('one', '1')`;
        await drain(conn, "one");
        await conn`select count(*) from pgflow.start_flows('dia', array['1', '2']::jsonb[])`;
        await drain(conn, "dia");
        await conn`select pgflow.start_flow('one', '2')`;
        const [one] = await conn<Task[]>`
          select run_id, step_slug, task_index
          from pgflow.read_and_start_tasks('one', 30, 1, ${WORKER_ID}::uuid)`;
        await conn`select status from pgflow.complete_task(${one.run_id}::uuid, ${one.step_slug},
                                                           ${one.task_index}::int, '1'::jsonb)`;
        for (const flow of ["one", "dia"]) {
          await conn`select count(*) from pgflow.start_flows(${flow},
                       array(select to_jsonb(i) from generate_series(1, 3000) i))`;
        }

        const TABLES = ["pgflow.runs", "pgflow.step_states", "pgflow.step_tasks"];
        /** Index pages of runs, and rows of each table, that `what` reads. */
        const readsOf = async (what: () => Promise<unknown>) => {
          const { counts: { pages, ...rows } } = await countedDuring(conn, {
            pages: () => indexPagesRead(conn, "pgflow.runs"),
            ...Object.fromEntries(TABLES.map((table) => [table, () => rowsRead(conn, table)])),
          }, what);
          return { pages, rows };
        };
        // A lookup by key reads a page per level of the primary key (two or three here); a
        // report looks its run up a handful of times. Index pages include those a write
        // touches (a completed run's new index entries).
        const most = 40;
        const batch = await readsOf(async () => report(conn, await claim(conn, "one")));
        const single = await readsOf(async () => {
          const [task] = await conn<Task[]>`
            select run_id, step_slug, task_index
            from pgflow.read_and_start_tasks('one', 30, 1, ${WORKER_ID}::uuid)`;
          await conn`select status from pgflow.complete_task(${task.run_id}::uuid,
                       ${task.step_slug}, ${task.task_index}::int, '1'::jsonb)`;
        });
        const start = await readsOf(() => conn`select pgflow.start_flow('one', '3')`);
        // Reports that make steps ready in many runs start them together
        // (_start_ready_steps_of), and start_flows returns its runs.
        const ready = await readsOf(async () => report(conn, await claim(conn, "dia")));
        const bulk = await readsOf(() =>
          conn`select count(*) from pgflow.start_flows('one',
                 array(select to_jsonb(i) from generate_series(1, ${BATCH}) i))`
        );
        // [what, reads, tasks, rows per task]: a diamond's report touches its run's four
        // step states several times (count-downs, the dependents, their start).
        const cases = [
          [`a claim and a batch of ${BATCH} reports`, batch, BATCH, ROWS_PER_TASK],
          ["one claim and complete_task", single, 1, ROWS_PER_TASK],
          ["one start_flow", start, 1, ROWS_PER_TASK],
          [`a batch of ${BATCH} reports that make steps ready`, ready, BATCH, 2 * ROWS_PER_TASK],
          [`start_flows of ${BATCH} runs`, bulk, BATCH, ROWS_PER_TASK],
        ] as const;
        for (const [what, reads, tasks, rowsPerTask] of cases) {
          assert.ok(reads.pages <= most * tasks, `${what} read ${reads.pages} index pages of runs`);
          for (const [table, rows] of Object.entries(reads.rows)) {
            assert.ok(rows <= rowsPerTask * tasks, `${what} read ${rows} rows of ${table}`);
          }
        }
      } finally {
        conn.release();
      }
    },
  );
}

// start_flows starts a root map itself; start_flow through start_ready_steps.
for (const start of ["start_flow", "start_flows"]) {
  dbTest(
    `a claim of a wide map reads its tasks' elements, not the map's whole array (${start})`,
    async ({ sql }) => {
      await define(sql, WIDE_MAP_FLOW);
      const conn = await genericPlans(sql);
      try {
        // An array stored compressed out of line (several hundred kilobytes).
        const input = conn`(select jsonb_agg(jsonb_build_object('id', i, 'key', md5(i::text)))
                          from generate_series(1, 5000) i)`;
        if (start === "start_flow") await conn`select pgflow.start_flow('wide', ${input})`;
        else await conn`select count(*) from pgflow.start_flows('wide', array[${input}])`;
        const [{ toast }] = await conn<{ toast: string }[]>`
      select reltoastrelid::regclass::text as toast from pg_class where oid = 'pgflow.runs'::regclass`;
        const toastPages = async () => {
          const [row] = await conn<{ n: number }[]>`
        select (pg_stat_get_xact_blocks_fetched(${toast}::regclass)
                + coalesce(sum(pg_stat_get_xact_blocks_fetched(i.indexrelid)), 0))::int as n
        from pg_index i where i.indrelid = ${toast}::regclass`;
          return row.n;
        };
        const { result: tasks, counts: { read } } = await countedDuring(
          conn,
          { read: toastPages },
          () => claim(conn, "wide"),
        );
        assert.equal(tasks.length, BATCH);
        assert.equal(
          read,
          0,
          `the claim read ${read} pages of the run input's out-of-line storage`,
        );
      } finally {
        conn.release();
      }
    },
  );
}
