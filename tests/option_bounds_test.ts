/**
 * Every flow/step option has an upper bound the engine handles: without one,
 * `create_flow(timeout => 2147483647)` was accepted and then every read of the
 * flow failed in start_tasks with "integer out of range". The bounds live in
 * OPTION_BOUNDS (TypeScript) and pgflow._option_bounds (SQL); these tests
 * check they agree and that a flow at the bounds runs.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { define, failOne, takeTasks } from "./_support/drive.ts";
import { Flow, FlowDefinitionError, OPTION_BOUNDS } from "../src/dsl/mod.ts";
import { flowShape } from "../src/dsl/flow_shape.ts";
import { startFlow } from "../src/db/runs.ts";
import type { Sql } from "../src/db/connect.ts";

const SQL_NAMES = {
  maxAttempts: "max_attempts",
  baseDelay: "base_delay",
  timeout: "timeout",
  startDelay: "start_delay",
} as const;
type Option = keyof typeof OPTION_BOUNDS;
const OPTIONS = Object.keys(OPTION_BOUNDS) as Option[];

/** Runs `statement` in a transaction that is rolled back; resolves with its error, if any. */
async function probe(sql: Sql, statement: string): Promise<string | undefined> {
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(statement);
      throw new Error("rollback");
    });
  } catch (error) {
    const message = (error as Error).message;
    return message === "rollback" ? undefined : message;
  }
}

dbTest("SQL accepts each option exactly within OPTION_BOUNDS", async ({ sql }) => {
  await define(sql, `select pgflow.create_flow('f')`);
  for (const option of OPTIONS) {
    const { min, max } = OPTION_BOUNDS[option];
    const name = SQL_NAMES[option];
    const calls = [`select pgflow.add_step('f', 's', ${name} => %)`];
    if (option !== "startDelay") calls.push(`select pgflow.create_flow('g', ${name} => %)`);
    for (const call of calls) {
      for (const ok of [min, max]) {
        assert.equal(await probe(sql, call.replace("%", String(ok))), undefined, `${call}: ${ok}`);
      }
      for (const bad of [min - 1, max + 1]) {
        assert.match(
          (await probe(sql, call.replace("%", String(bad)))) ?? "accepted",
          new RegExp(`${name} must be between ${min} and ${max}, got ${bad}$`),
          `${call}: ${bad}`,
        );
      }
    }
  }
});

dbTest("create_flow refuses timeout 2147483647 instead of breaking every read", async ({ sql }) => {
  const error = await probe(sql, `select pgflow.create_flow('big', timeout => 2147483647)`);
  assert.equal(
    error,
    "create_flow('big'): timeout must be between 1 and 86400, got 2147483647",
  );
  // The table refuses it too, whatever writes it.
  assert.match(
    (await probe(sql, `insert into pgflow.flows (flow_slug, opt_timeout) values ('x', 86401)`))!,
    /flows_timeout_range/,
  );
});

Deno.test("the DSL refuses an option beyond its bound, naming option, value and bound", () => {
  assert.throws(
    () => new Flow({ slug: "big", timeout: 2147483647 }),
    (error: unknown) =>
      error instanceof FlowDefinitionError &&
      /option timeout must be an integer between 1 and 86400, got 2147483647/.test(error.message),
  );
  assert.throws(
    () => new Flow({ slug: "big" }).step({ slug: "s", startDelay: 604801 }, () => 1),
    /step "s": option startDelay must be an integer between 0 and 604800, got 604801/,
  );
});

dbTest("ensure_flow_compiled refuses out-of-range or fractional shape options", async ({ sql }) => {
  const shape = flowShape(new Flow({ slug: "shaped" }).step({ slug: "s" }, () => 1));
  const cases: [unknown, RegExp][] = [
    [
      { ...shape, options: { ...shape.options, timeout: 2147483647 } },
      /shape options\.timeout must be an integer between 1 and 86400, got 2147483647/,
    ],
    [
      { ...shape, options: { ...shape.options, maxAttempts: 1e20 } },
      /shape options\.maxAttempts must be an integer between 0 and 1000/,
    ],
    [
      { ...shape, options: { ...shape.options, baseDelay: 1.5 } },
      /shape options\.baseDelay must be an integer between 0 and 86400, got 1\.5/,
    ],
    [
      { ...shape, steps: [{ ...shape.steps[0], options: { startDelay: 604801 } }] },
      /shape step 's' option startDelay must be an integer between 0 and 604800, got 604801/,
    ],
  ];
  for (const [bad, pattern] of cases) {
    await assert.rejects(
      sql`select pgflow.ensure_flow_compiled('shaped', ${sql.json(bad as never)})`,
      pattern,
    );
  }
});

dbTest(
  "a flow at every upper bound runs: reads, retries and delays stay in range",
  async ({ sql }) => {
    const max = (option: Option) => OPTION_BOUNDS[option].max;
    await define(
      sql,
      `select pgflow.create_flow('edge', max_attempts => ${max("maxAttempts")},
       base_delay => ${max("baseDelay")}, timeout => ${max("timeout")});
     select pgflow.add_step('edge', 'a');
     select pgflow.add_step('edge', 'later', deps_slugs => array['a'],
       start_delay => ${max("startDelay")});`,
    );
    await startFlow(sql, { flowSlug: "edge", input: {} });
    const [task] = await takeTasks(sql, "edge");
    assert.equal(task.step_slug, "a");
    await failOne(sql, task, "once");
    const [row] = await sql`
    select t.status, q.vt > clock_timestamp() + interval '1 day' as hidden
    from pgflow.step_tasks t join pgmq.q_edge q on q.msg_id = t.message_id`;
    assert.deepEqual(row, { status: "queued", hidden: true });
    // Huge attempt counts and base delays are capped, never an overflow.
    const [delays] = await sql`
    select pgflow.calculate_retry_delay(${max("baseDelay")}, 2147483647) as a,
           pgflow.calculate_retry_delay(1e100000, 2147483647) as b,
           pgflow.calculate_retry_delay(0, 2147483647) as c`;
    assert.deepEqual(delays, { a: 2147483647, b: 2147483647, c: 0 });
  },
);
