/**
 * pgflow's workers on edgeflow's core: the exact SQL calls pgflow's edge worker
 * makes (0.10-style and 0.12+-style; learnt from pgflow's migrations and
 * public docs, since its worker is on JSR only), and pgflow's SQL behaviour
 * where edgeflow's used to differ.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";
import { define, getRun, runUntilIdle } from "./_support/drive.ts";
import { compileFlow, Flow as PgflowFlow } from "@pgflow/dsl";
import { FIXTURES_DIR, fixturesMissing, psqlFile } from "./_support/pgflow_fixture.ts";
import type { Sql } from "../src/db/connect.ts";
import type { Json } from "../src/db/types.ts";

const WORKER = "44444444-4444-4444-8444-444444444444";

/** A shape as pgflow's extractFlowShape writes it: options left out when unset. */
const SHAPE = {
  steps: [
    { slug: "fetch", stepType: "single", dependencies: [] },
    { slug: "items", stepType: "single", dependencies: ["fetch"], options: { timeout: 30 } },
    { slug: "double", stepType: "map", dependencies: ["items"] },
    { slug: "sum", stepType: "single", dependencies: ["double", "fetch"] },
  ],
};

type Style = "0.10" | "0.12+";

/** pgflow's worker loop: register, read_with_poll, start_tasks, handler, complete_task. */
async function runAsPgflowWorker(sql: Sql, flow: string, style: Style): Promise<void> {
  const [worker] = await sql`
    insert into pgflow.workers (queue_name, worker_id, function_name)
    values (${flow}, ${WORKER}::uuid, 'pgflow-worker') returning *`;
  assert.equal(worker.stopped_at, null);
  await sql`select pgflow.track_worker_function('pgflow-worker')`;
  const flowInputs = new Map<string, Json>();
  for (let round = 0; round < 20; round++) {
    const messages = await sql<{ msg_id: number }[]>`
      select * from pgmq.read_with_poll(${flow}, 5, 10, 1, 50)`;
    if (messages.length === 0) break;
    const tasks = await sql<
      { run_id: string; step_slug: string; task_index: number; input: Json; flow_input: Json }[]
    >`select * from pgflow.start_tasks(${flow}, ${
      messages.map((m) => m.msg_id)
    }::bigint[], ${WORKER}::uuid)`;
    for (const task of tasks) {
      let flowInput: Json;
      if (style === "0.10") {
        flowInput = task.step_slug === "double" ? null : (task.input as { run: Json }).run;
      } else {
        // 0.12+: root steps get flow_input; others load it lazily, as pgflow's worker does.
        flowInput = task.flow_input ?? flowInputs.get(task.run_id) ??
          (await sql`select input from pgflow.runs where run_id = ${task.run_id}`)[0].input;
        flowInputs.set(task.run_id, flowInput);
      }
      const input = task.input as Record<string, Json>;
      const output: Json = task.step_slug === "fetch"
        ? { n: (flowInput as { n: number }).n }
        : task.step_slug === "items"
        ? [1, 2, 3]
        : task.step_slug === "double"
        ? (task.input as number) * 2
        : (input.double as number[]).reduce((a, b) => a + b, 0) + (input.fetch as { n: number }).n;
      await sql`select pgflow.complete_task(${task.run_id}::uuid, ${task.step_slug}, ${task.task_index},
                                            ${sql.json(output)}::jsonb)`;
    }
    const [beat] = await sql`
      update pgflow.workers set last_heartbeat_at = clock_timestamp() where worker_id = ${WORKER}::uuid
      returning (deprecated_at is not null) as is_deprecated`;
    assert.equal(beat.is_deprecated, false);
  }
  await sql`select pgflow.mark_worker_stopped(${WORKER}::uuid)`;
}

for (const style of ["0.10", "0.12+"] as Style[]) {
  dbTest(
    `a pgflow ${style}-style worker compiles its flow with pgflow's shape and runs it`,
    async ({ sql }) => {
      const [compiled] = await sql`select pgflow.ensure_flow_compiled('calc', ${
        sql.json(SHAPE)
      }::jsonb) as r`;
      assert.equal(compiled.r.status, "compiled");
      const [{ run_id }] = await sql`select run_id from pgflow.start_flow('calc', '{"n": 5}')`;
      await runAsPgflowWorker(sql, "calc", style);
      const run = await getRun(sql, run_id);
      assert.equal(run.status, "completed");
      assert.deepEqual(run.output, { sum: 17 });
    },
  );
}

dbTest("flow shapes: pgflow's format, options tuned by UPDATE stay verified", async ({ sql }) => {
  const ensure = async (shape: object) =>
    (await sql`select pgflow.ensure_flow_compiled('calc', ${
      JSON.stringify(shape)
    }::text::jsonb) as r`)[0].r;
  assert.equal((await ensure(SHAPE)).status, "compiled");
  const [{ shape }] = await sql`select pgflow._get_flow_shape('calc') as shape`;
  assert.deepEqual(shape.steps[3], {
    slug: "sum",
    stepType: "single",
    dependencies: ["double", "fetch"],
  });
  assert.deepEqual(shape.steps[1].options, { timeout: 30 });
  assert.deepEqual(shape.options, { maxAttempts: 3, baseDelay: 5, timeout: 60 });
  const [{ missing }] = await sql`select pgflow._get_flow_shape('nope') as missing`;
  assert.deepEqual(missing, { steps: [] });

  // An operator tunes options without recompiling; the worker still starts.
  await sql`update pgflow.steps set opt_timeout = 120, opt_max_attempts = 5 where flow_slug = 'calc'`;
  await sql`update pgflow.flows set opt_base_delay = 2 where flow_slug = 'calc'`;
  assert.deepEqual(await ensure(SHAPE), { status: "verified", differences: [] });

  const changed = structuredClone(SHAPE) as typeof SHAPE;
  changed.steps[2].stepType = "single";
  changed.steps[3].dependencies = ["double"];
  changed.steps.push({ slug: "extra", stepType: "single", dependencies: [] });
  const mismatch = await ensure(changed);
  assert.equal(mismatch.status, "mismatch");
  assert.deepEqual(mismatch.differences, [
    "step count: code has 5, database has 4",
    "step at index 2 ('double'): code has step type single, database has map",
    "step at index 3 ('sum'): code depends on [double], database on [double, fetch]",
    "step at index 4: the code has 'extra', the database has none",
  ]);
  const renamed = structuredClone(SHAPE) as typeof SHAPE;
  renamed.steps[0].slug = "get";
  assert.match(
    (await ensure(renamed)).differences[0],
    /step at index 0: code has slug 'get', database has 'fetch'/,
  );

  // pgflow 0.14's condition keys: at their defaults they equal absent keys; a
  // condition is structure.
  const withDefaults = {
    steps: SHAPE.steps.map((s) => ({
      ...s,
      whenUnmet: "skip",
      whenExhausted: "fail",
      requiredInputPattern: { defined: false },
      forbiddenInputPattern: { defined: false },
    })),
  };
  assert.equal((await ensure(withDefaults)).status, "verified");
  withDefaults.steps[0].requiredInputPattern = { defined: true, value: { x: 1 } } as never;
  withDefaults.steps[1].whenExhausted = "skip-cascade";
  assert.deepEqual((await ensure(withDefaults)).differences, [
    `step at index 0 ('fetch'): code has requiredInputPattern {"x": 1}, database has null`,
    `step at index 1 ('items'): code has whenExhausted "skip-cascade", database has "fail"`,
  ]);
  await assert.rejects(
    ensure({ steps: [{ slug: "a", stepType: "single", dependencies: [], whenUnmet: "never" }] }),
    /step 'a': shape whenUnmet must be "fail", "skip" or "skip-cascade", got "never"/,
  );
  await assert.rejects(
    ensure({
      steps: [{
        slug: "a",
        stepType: "single",
        dependencies: [],
        forbiddenInputPattern: { defined: true, value: [1] },
      }],
    }),
    /shape forbiddenInputPattern must be \{"defined": false\} or \{"defined": true, "value": <object>\}/,
  );

  // A flow with conditions is created from its shape and reads back the same.
  const conditional = {
    options: { maxAttempts: 3, baseDelay: 5, timeout: 60 },
    steps: [
      {
        slug: "a",
        stepType: "single",
        dependencies: [],
        whenUnmet: "skip-cascade",
        requiredInputPattern: { defined: true, value: { go: true } },
      },
      {
        slug: "b",
        stepType: "single",
        dependencies: ["a"],
        whenExhausted: "skip",
        forbiddenInputPattern: { defined: true, value: { a: null } },
      },
    ],
  };
  assert.equal(
    (await sql`select pgflow.ensure_flow_compiled('cond', ${
      JSON.stringify(conditional)
    }::text::jsonb) as r`)[0].r.status,
    "compiled",
  );
  assert.deepEqual(
    (await sql`select pgflow._get_flow_shape('cond') as s`)[0].s,
    conditional,
  );
});

dbTest(
  "pgflow's SQL behaviour: NULL outputs, kept error messages, set_vt_batch, constraints",
  async ({ sql }) => {
    await define(sql, `select pgflow.create_flow('f'); select pgflow.add_step('f', 'a');`);
    const [{ run_id }] = await sql`select run_id from pgflow.start_flow('f', '{}')`;
    const take = async () => {
      const msgs = await sql`select msg_id from pgmq.read('f', 30, 10)`;
      return await sql`select * from pgflow.start_tasks('f', ${
        msgs.map((m) => m.msg_id)
      }::bigint[], ${WORKER}::uuid)`;
    };
    assert.equal((await take()).length, 1);
    await sql`select pgflow.fail_task(${run_id}::uuid, 'a', 0, 'first try failed')`;
    await sql`select pgflow.advance_clock('1 minute')`;
    assert.equal((await take()).length, 1);
    await sql`select pgflow.complete_task(${run_id}::uuid, 'a', 0, null)`;
    const [task] = await sql`
    select status, output is null as sql_null, error_message from pgflow.step_tasks where run_id = ${run_id}`;
    assert.deepEqual(task, {
      status: "completed",
      sql_null: true,
      error_message: "first try failed",
    });
    assert.equal((await getRun(sql, run_id)).status, "completed");

    assert.deepEqual([...await sql`select * from pgflow.set_vt_batch('f', null, null)`], []);
    assert.deepEqual([...await sql`select * from pgflow.set_vt_batch('f', '{1}', null)`], []);
    const [{ result }] = await sql`
    select pg_get_function_result('pgflow.set_vt_batch(text, bigint[], int[])'::regprocedure) as result`;
    assert.equal(
      result,
      "TABLE(msg_id bigint, read_ct integer, enqueued_at timestamp with time zone, vt timestamp with time zone, message jsonb, headers jsonb)",
    );

    await assert.rejects(
      sql`update pgflow.step_states set status = 'started', initial_tasks = null where run_id = ${run_id}`,
      /step_states_started_has_tasks/,
    );
    assert.deepEqual([...await sql`select * from pgflow.poll_for_tasks('f', 30, 10)`], []);
    // pgflow's documented retention function returns nothing, and a user's copy replaces it.
    const [{ type }] =
      await sql`select pg_typeof(pgflow.prune_data_older_than('1 day'))::text as type`;
    assert.equal(type, "void");
    await sql.unsafe(
      `create or replace function pgflow.prune_data_older_than(retention_interval interval)
                    returns void language sql as 'select'`,
    );
  },
);

dbTest("an empty map's step event carries started_at and completed_at", async (db) => {
  await define(
    db.sql,
    `select pgflow.create_flow('m');
                        select pgflow.add_step('m', 'each', step_type => 'map');`,
  );
  const runId = crypto.randomUUID();
  const events: Record<string, Json>[] = [];
  const listener = db.connect(1);
  await listener.listen(`pgflow:run:${runId}`, (p) => events.push(JSON.parse(p)));
  await db.sql`select pgflow.start_flow('m', '[]', ${runId}::uuid)`;
  const step = await eventually(
    "the step event",
    () => events.find((e) => e.event === "step:each:completed"),
  );
  assert.ok(step.started_at && step.completed_at, JSON.stringify(step));
});

const missing = fixturesMissing();
if (missing) console.warn(`pgflow_contract_test (worker management): ${missing}`);

dbTest(
  "pgflow 0.10's worker management: is_local, ensure_workers, cron setup and log cleanup",
  async (db) => {
    const { sql } = db;
    await psqlFile(db.url, new URL("supabase_standins.sql", FIXTURES_DIR));
    const local = async (secret: string | null) => {
      const [{ is_local }] = await sql.begin(async (tx) => {
        if (
          secret !== null
        ) await tx`select set_config('app.settings.jwt_secret', ${secret}, true)`;
        return await tx`select pgflow.is_local()`;
      });
      return is_local;
    };
    assert.equal(await local(null), false);
    assert.equal(await local(""), false);
    assert.equal(await local("super-secret-jwt-token-with-at-least-32-characters-long"), true);

    await sql`select pgflow.track_worker_function('w')`;
    const [before] = await sql`select updated_at from pgflow.worker_functions`;
    await sql`select pgflow.advance_clock('1 second')`;
    await sql`select pgflow.track_worker_function('w')`;
    const [after] = await sql`select updated_at from pgflow.worker_functions`;
    assert.ok(after.updated_at > before.updated_at, "track_worker_function refreshes updated_at");

    // Production without credentials: nothing is pinged, nothing recorded.
    assert.deepEqual([...await sql`select * from pgflow.ensure_workers()`], []);
    assert.equal(
      (await sql`select last_invoked_at from pgflow.worker_functions`)[0].last_invoked_at,
      null,
    );

    // Production with pgflow's Vault secrets: pinged once (debounce), with the key.
    await sql`select vault.create_secret('proj', 'supabase_project_id')`;
    await sql`select vault.create_secret('key', 'supabase_service_role_key')`;
    const [pinged] = await sql`select * from pgflow.ensure_workers()`;
    assert.equal(pinged.function_name, "w");
    assert.equal(pinged.invoked, true);
    assert.ok(pinged.request_id);
    assert.deepEqual([...await sql`select * from pgflow.ensure_workers()`], []);
    // A live worker stops the pings; a stale heartbeat counts as dead.
    await sql`update pgflow.worker_functions set last_invoked_at = now() - interval '1 minute'`;
    await sql`insert into pgflow.workers (queue_name, worker_id, function_name) values ('q', ${WORKER}::uuid, 'w')`;
    assert.deepEqual([...await sql`select * from pgflow.ensure_workers()`], []);
    await sql`update pgflow.workers set last_heartbeat_at = now() - interval '1 hour'`;
    assert.equal((await sql`select * from pgflow.ensure_workers()`).length, 1);
    // Local: always pings every enabled function, live worker or not.
    await sql`update pgflow.workers set last_heartbeat_at = now()`;
    const localPings = await sql.begin(async (tx) => {
      await tx`select set_config('app.settings.jwt_secret', 'super-secret-jwt-token-with-at-least-32-characters-long', true)`;
      await tx`select * from pgflow.ensure_workers()`;
      return await tx`select * from pgflow.ensure_workers()`;
    });
    assert.equal(localPings.length, 1);

    // Cron: schedules and replaces its jobs; cleanup touches only their logs.
    assert.match(
      (await sql`select pgflow.setup_ensure_workers_cron('2 seconds') as t`)[0].t,
      /pgflow_ensure_workers/,
    );
    await sql`select pgflow.setup_ensure_workers_cron('3 seconds')`;
    const jobs = await sql`select jobname, schedule from cron.job order by jobname`;
    assert.deepEqual(jobs.map((j) => [j.jobname, j.schedule]), [
      ["pgflow_cleanup_logs", "0 * * * *"],
      ["pgflow_ensure_workers", "3 seconds"],
    ]);
    await sql`select cron.schedule('someone_else', '* * * * *', 'select 1')`;
    await sql`insert into cron.job_run_details (jobid, end_time)
            select jobid, now() - interval '2 days' from cron.job`;
    const [{ cron_deleted }] = await sql`select * from pgflow.cleanup_ensure_workers_logs(24)`;
    assert.equal(cron_deleted, 2);
    assert.equal((await sql`select count(*)::int as n from cron.job_run_details`)[0].n, 1);
  },
  { ignore: Boolean(missing) },
);

dbTest(
  "a flow compiled by pgflow's own compiler (@pgflow/dsl 0.8.1) runs on the core",
  async ({ sql }) => {
    const flow = new PgflowFlow<{ n: number }>({ slug: "pgdsl", maxAttempts: 2 })
      .step({ slug: "fetch" }, (input) => ({ n: input.run.n }))
      .array({ slug: "items", dependsOn: ["fetch"] }, () => [1, 2, 3])
      .map({ slug: "double", array: "items", timeout: 10 }, (x) => x * 2)
      .step(
        { slug: "sum", dependsOn: ["double", "fetch"] },
        (input) => input.double.reduce((a, b) => a + b, 0) + input.fetch.n,
      );
    await sql.unsafe(compileFlow(flow).join("\n"));
    const [double] =
      await sql`select step_type, opt_timeout from pgflow.steps where step_slug = 'double'`;
    assert.deepEqual(double, { step_type: "map", opt_timeout: 10 });
    const [{ run_id }] = await sql`select run_id from pgflow.start_flow('pgdsl', '{"n": 4}')`;
    // pgflow's own handlers, called with the inputs start_tasks hands out.
    const handlers = Object.fromEntries(
      ["fetch", "items", "double", "sum"].map((slug) => [
        slug,
        (input: Json) =>
          (flow.getStepDefinition(slug as "fetch").handler as unknown as (i: Json) => Json)(input),
      ]),
    );
    await runUntilIdle(sql, "pgdsl", handlers);
    const run = await getRun(sql, run_id);
    assert.equal(run.status, "completed");
    assert.deepEqual(run.output, { sum: 16 });
  },
);
