/**
 * Startup compilation, in both spellings: ours (`compileOnStartup`, `recreateOnMismatch`) and
 * pgflow's (`compilation: false | { allowDataLoss }`).
 */
import assert from "node:assert/strict";
import { startFlow } from "../src/db/runs.ts";
import { Flow } from "../src/dsl/mod.ts";
import { createWorker } from "../src/worker/create_worker.ts";
import { FlowMismatchError, WorkerOptionError } from "../src/worker/errors.ts";
import { resolveFlowWorkerOptions } from "../src/worker/options.ts";
import { waitForRun, workerTest } from "./_support/worker.ts";

const v1 = new Flow<{ n: number }>({ slug: "compiled" })
  .step({ slug: "first" }, ({ run }) => run.n + 1);

const v2 = new Flow<{ n: number }>({ slug: "compiled" })
  .step({ slug: "first" }, ({ run }) => run.n + 1)
  .step({ slug: "second", dependsOn: ["first"] }, ({ first }) => first * 10);

Deno.test("the two spellings of startup compilation resolve to the same settings", () => {
  const settings = (options: Record<string, unknown>) => {
    const config = resolveFlowWorkerOptions(options);
    return [config.compileOnStartup, config.recreateOnMismatch];
  };
  assert.deepEqual(settings({}), [true, false]);
  assert.deepEqual(settings({ compilation: {} }), [true, false]);
  assert.deepEqual(settings({ compilation: { allowDataLoss: false } }), [true, false]);
  assert.deepEqual(settings({ compilation: { allowDataLoss: true } }), [true, true]);
  assert.deepEqual(settings({ recreateOnMismatch: true }), [true, true]);
  assert.deepEqual(settings({ compilation: false }), [false, false]);
  assert.deepEqual(settings({ compileOnStartup: false }), [false, false]);
  // Both spellings at once are fine when they agree.
  assert.deepEqual(settings({ compilation: false, compileOnStartup: false }), [false, false]);
  assert.deepEqual(
    settings({ compilation: { allowDataLoss: true }, recreateOnMismatch: true }),
    [true, true],
  );
});

Deno.test("bad or contradicting compilation options name the option", () => {
  const flow = v1;
  const url = "postgres://u:p@127.0.0.1:5432/db";
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ compilation: true }, "compilation", /must be false or \{ allowDataLoss\?: boolean \}/],
    [{ compilation: "off" }, "compilation", /got "off"/],
    [{ compilation: { allowDataLoss: "yes" } }, "compilation.allowDataLoss", /true or false/],
    [{ compilation: { allowDataloss: true } }, "compilation.allowDataloss", /allowDataLoss/],
    [{ compilation: false, compileOnStartup: true }, "compilation", /contradicts/],
    [
      { compilation: { allowDataLoss: true }, recreateOnMismatch: false },
      "compilation",
      /contradicts recreateOnMismatch/,
    ],
    [{ compileOnStartup: false, recreateOnMismatch: true }, "recreateOnMismatch", /needs/],
    [{ compileOnStartup: "no" }, "compileOnStartup", /true or false/],
  ];
  for (const [options, option, message] of cases) {
    assert.throws(
      () => createWorker(flow, { connectionString: url, ...options }),
      (error: unknown) => {
        assert.ok(error instanceof WorkerOptionError, `${option}: ${error}`);
        assert.equal(error.option, option);
        assert.match(error.message, message);
        return true;
      },
      option,
    );
  }
  assert.throws(
    () =>
      createWorker(() => {}, {
        queueName: "q",
        connectionString: url,
        ...({ compilation: false } as Record<string, unknown>),
      }),
    /compilation only applies to flow workers/,
  );
});

workerTest(
  "compilation: { allowDataLoss: true } recreates a flow that differs, like recreateOnMismatch",
  async (t) => {
    const one = await t.run(v1);
    const old = await startFlow(t.sql, { flowSlug: "compiled", input: { n: 1 } });
    await waitForRun(t.sql, old.run_id);
    await one.worker.stop();

    const refused = await t.start(v2, { compilation: {} });
    await assert.rejects(refused.worker.start(), FlowMismatchError);

    const two = await t.run(v2, { compilation: { allowDataLoss: true } });
    assert.ok(two.logs.some((record) => record.level === "warn" && /recreated/.test(record.msg)));
    const [gone] = await t.sql`select 1 from pgflow.runs where run_id = ${old.run_id}`;
    assert.equal(gone, undefined);
    const run = await startFlow(t.sql, { flowSlug: "compiled", input: { n: 1 } });
    assert.deepEqual((await waitForRun(t.sql, run.run_id)).output, { second: 20 });
  },
);

workerTest(
  "compilation: false neither compiles nor compares; a missing flow is refused by name",
  async (t) => {
    const missing = await t.start(v1, { compilation: false });
    await assert.rejects(
      missing.worker.start(),
      /flow "compiled" is not in the database and the worker does not compile it/,
    );
    const [none] = await t.sql`select 1 from pgflow.flows where flow_slug = 'compiled'`;
    assert.equal(none, undefined);

    // Compiled by "a migration" (here: a worker that compiles), then a worker of a different
    // shape starts without comparing: the database's definition stays as it was.
    const compiler = await t.run(v2);
    await compiler.worker.stop();
    const lenient = await t.run(v1, { compileOnStartup: false });
    const [{ count }] = await t.sql<{ count: number }[]>`
      select count(*)::int as count from pgflow.steps where flow_slug = 'compiled'`;
    assert.equal(count, 2);
    assert.equal(lenient.worker.state, "running");
  },
);
