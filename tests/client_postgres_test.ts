/**
 * The client over postgres.js, end to end: a real worker runs the flow, the client starts runs
 * with `start_flow_with_states`, follows them by LISTEN and re-reads them with
 * `get_run_with_states`.
 */
import assert from "node:assert/strict";
import { Flow } from "../src/dsl/mod.ts";
import {
  type ClientTransport,
  createClient,
  type FlowRun,
  postgresTransport,
  RunEndedError,
  type RunEvent,
  RunWaitTimeoutError,
} from "../src/client/mod.ts";
import { completeTask } from "../src/db/tasks.ts";
import { takeTasks } from "./_support/drive.ts";
import { workerTest } from "./_support/worker.ts";
import { dbTest } from "./_support/db.ts";
import { eventually } from "./_support/eventually.ts";

const Greeting = new Flow<{ name: string }>({ slug: "greeting", maxAttempts: 1, baseDelay: 0 })
  .step({ slug: "shout" }, ({ run }) => run.name.toUpperCase())
  .step({ slug: "count", dependsOn: ["shout"] }, ({ shout }) => shout.length)
  .step({ slug: "greet", dependsOn: ["shout"] }, ({ run, shout }) => {
    if (run.name === "nobody") throw new Error("nobody to greet");
    return `hello ${shout}`;
  });

workerTest("postgres.js client: a typed run, its step states, events and output", async (t) => {
  await t.run(Greeting);
  const pool = t.connect(2);
  const client = createClient(pool);
  try {
    const run = await client.startFlow(Greeting, { name: "ada" });
    const events: string[] = [];
    const stepEvents: string[] = [];
    run.on("*", (event) => events.push(event.event));
    run.on("step:greet:*", (event, handle) => {
      // Listeners run after the handle re-read the run: its state already shows the event (or
      // something newer, when the step finished before the re-read).
      stepEvents.push(`${event.event}/${handle.step("greet").status}`);
    });
    assert.equal(run.flowSlug, "greeting");
    assert.deepEqual(run.input, { name: "ada" });
    assert.equal(run.steps.length, 3);

    const done = await run.waitFor("completed", { timeoutMs: 10_000 });
    assert.equal(done, run);
    assert.equal(run.status, "completed");
    const output: { count: number; greet: string } | null = run.output;
    assert.deepEqual(output, { count: 3, greet: "hello ADA" });
    assert.deepEqual(run.steps.map((step) => [step.slug, step.status]), [
      ["shout", "completed"],
      ["count", "completed"],
      ["greet", "completed"],
    ]);
    assert.ok(run.completedAt instanceof Date);
    await eventually("the run:completed event", () => events.includes("run:completed"));
    // run:started and step:shout:started happened inside start_flow_with_states, after the
    // client's LISTEN: they are heard too.
    assert.equal(events[0], "run:started");
    assert.ok(events.includes("step:shout:started"), events.join(", "));
    assert.ok(events.indexOf("step:shout:completed") < events.indexOf("step:greet:started"));
    assert.equal(events.at(-1), "run:completed");
    assert.equal(stepEvents.length, 2, stepEvents.join(", "));
    assert.match(stepEvents[0], /^step:greet:started\/(started|completed)$/);
    assert.equal(stepEvents[1], "step:greet:completed/completed");

    // A handle on an existing run.
    const again = await client.getRun<typeof Greeting>(run.runId);
    assert.equal(again.status, "completed");
    assert.deepEqual(again.output, { count: 3, greet: "hello ADA" });
  } finally {
    await client.close();
    await pool.end();
  }
});

workerTest(
  "postgres.js client: a failed run rejects waitFor('completed') naming the step",
  async (t) => {
    await t.run(Greeting);
    const pool = t.connect(2);
    const client = createClient(pool);
    try {
      const run = await client.startFlow(Greeting, { name: "nobody" });
      const failures: RunEvent[] = [];
      run.on("run:failed", (event) => failures.push(event));
      await assert.rejects(run.waitFor("completed"), (error: unknown) => {
        assert.ok(error instanceof RunEndedError);
        assert.equal(error.status, "failed");
        assert.equal(error.failedStep, "greet");
        assert.match(
          error.message,
          /failed instead of becoming completed \(step greet: .*nobody to greet/,
        );
        return true;
      });
      assert.equal(await run.waitFor("failed"), run);
      assert.equal(run.failure?.step, "greet");
      assert.match(run.step("greet").errorMessage ?? "", /nobody to greet/);
      assert.equal(run.output, null);
      await eventually("the run:failed event", () => failures.length === 1);
      assert.equal(failures[0].failed_step, "greet");
    } finally {
      await client.close();
      await pool.end();
    }
  },
);

dbTest("postgres.js client: timeouts, bad input and unknown runs are clear errors", async (t) => {
  // The flow exists but no worker runs it: the run stays started.
  await t.sql`select pgflow.create_flow('greeting')`;
  await t.sql`select pgflow.add_step('greeting', 'shout')`;
  const pool = t.connect(2);
  const client = createClient(pool, { onError: (error) => assert.fail(String(error)) });
  try {
    const run: FlowRun<typeof Greeting> = await client.startFlow(Greeting, { name: "x" });
    assert.equal(run.status, "started");
    // The client follows a run once: asking again gives the same handle.
    assert.equal(await client.getRun(run.runId.toUpperCase()), run);
    await assert.rejects(run.waitFor("completed", { timeoutMs: 50 }), (error: unknown) => {
      assert.ok(error instanceof RunWaitTimeoutError);
      assert.match(error.message, /did not become completed within 50 ms \(it is started\)/);
      return true;
    });
    const aborted = new AbortController();
    const waiting = run.waitFor("completed", { signal: aborted.signal });
    aborted.abort(new Error("gave up"));
    await assert.rejects(waiting, /gave up/);
    assert.throws(() => run.on("finished" as never, () => {}), /is not an event pattern/);
    assert.throws(() => run.step("nope" as never), /has no step "nope" \(steps: shout\)/);

    await assert.rejects(client.startFlow("no_such_flow", {}), /no_such_flow/);
    await assert.rejects(
      client.startFlow(Greeting, { name: "x" }, { runId: "not-a-uuid" }),
      /runId must be a UUID/,
    );
    await assert.rejects(
      client.getRun("00000000-0000-4000-8000-000000000000"),
      /run 00000000-0000-4000-8000-000000000000 does not exist/,
    );
    assert.throws(() => createClient({} as never), /give a supabase-js client, a postgres.js pool/);

    // The typed API refuses wrong inputs and step slugs at compile time.
    const typeChecks = async () => {
      // @ts-expect-error: name must be a string
      await client.startFlow(Greeting, { name: 1 });
      // @ts-expect-error: no such step
      run.step("shot");
      // @ts-expect-error: no such step in an event pattern
      run.on("step:shot:completed", () => {});
    };
    assert.equal(typeof typeChecks, "function");

    // A run still going when the client closes: its waits are rejected, its LISTEN ends.
    const pending = assert.rejects(run.waitFor("completed"), /disposed while waiting/);
    await client.close();
    await pending;
  } finally {
    await client.close();
    await pool.end();
  }
});

/**
 * The real postgres.js transport, except that it holds the runs' ending events back until
 * `deliverHeld()` (a transport may deliver them after the events before them) and, like a real
 * channel, delivers nothing after an unsubscribe. `open` counts live subscriptions.
 */
function holdingEndingEvents(inner: ClientTransport) {
  const held: (() => void)[] = [];
  let open = 0;
  const transport: ClientTransport = {
    startFlowWithStates: (...args) => inner.startFlowWithStates(...args),
    getRunWithStates: (runId) => inner.getRunWithStates(runId),
    async subscribe(runId, onEvent) {
      let subscribed = true;
      const unsubscribe = await inner.subscribe(runId, (event) => {
        if (!/^run:(completed|failed)$/.test(event.event)) return onEvent(event);
        held.push(() => subscribed && onEvent(event));
      });
      open++;
      return async () => {
        if (subscribed) open--;
        subscribed = false;
        await unsubscribe();
      };
    },
  };
  return {
    transport,
    held: () => held.length,
    deliverHeld: () => held.splice(0).forEach((deliver) => deliver()),
    open: () => open,
  };
}

dbTest(
  "postgres.js client: a run's ending event reaches its listeners when a re-read saw the end first",
  async (t) => {
    await t.sql`select pgflow.create_flow('greeting')`;
    await t.sql`select pgflow.add_step('greeting', 'shout')`;
    const pool = t.connect(2);
    const holding = holdingEndingEvents(postgresTransport(pool));
    const client = createClient({ transport: holding.transport }, {
      onError: (error) => assert.fail(String(error)),
    });
    try {
      const run = await client.startFlow<typeof Greeting>("greeting", { name: "ada" });
      const events: string[] = [];
      run.on("*", (event) => events.push(event.event));
      const [task] = await takeTasks(t.sql, "greeting");
      await completeTask(t.sql, { runId: run.runId, stepSlug: "shout", taskIndex: 0, output: 1 });
      // step:shout:completed made the handle re-read the run: completed. run:completed, sent in
      // the same transaction, has not arrived yet.
      await run.waitFor("completed", { timeoutMs: 10_000 });
      assert.equal(task.step_slug, "shout");
      await eventually("the held run:completed", () => holding.held() === 1);
      assert.equal(holding.open(), 1, "the handle still listens for the ending event");
      assert.ok(!events.includes("run:completed"));

      holding.deliverHeld();
      await eventually("run:completed at the listener", () => events.includes("run:completed"));
      assert.equal(events.at(-1), "run:completed");
      await eventually("the unsubscribe once it was heard", () => holding.open() === 0);

      // A handle on a run that had already ended expects no ending event: it lets go at once.
      const ended = createClient({ transport: holding.transport });
      try {
        const again = await ended.getRun(run.runId);
        assert.equal(again.status, "completed");
        await eventually("the unsubscribe of an ended run", () => holding.open() === 0);
      } finally {
        await ended.close();
      }
    } finally {
      await client.close();
      await pool.end();
    }
  },
);
