/**
 * The inspector's server and queries on a real database: the API, the token rule, live events,
 * and the runs list at 100,000 runs (the page query must be an index scan).
 */
import assert from "node:assert/strict";
import type { Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import { getRunDetail, runPageQuery } from "../src/inspector/queries.ts";
import { completeTask } from "../src/db/tasks.ts";
import { startInspector } from "../src/inspector/server.ts";
import { dbTest } from "./_support/db.ts";
import { define, failOne, runUntilIdle, takeTasks } from "./_support/drive.ts";

const FLOW = `
  select pgflow.create_flow('shop', max_attempts => 1);
  select pgflow.add_step('shop', 'fetch');
  select pgflow.add_step('shop', 'each', deps_slugs => array['fetch'], step_type => 'map');
  select pgflow.add_step('shop', 'total', deps_slugs => array['each']);`;

async function getJson(url: string, init?: RequestInit) {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.json() };
}

dbTest("the API lists flows with a laid-out DAG, runs, and one run with its tasks", async (db) => {
  await define(db.sql, FLOW);
  const run = await startFlow(db.sql, { flowSlug: "shop", input: { n: 2 } });
  await runUntilIdle(db.sql, "shop", {
    fetch: () => [1, 2],
    each: (input) => (input as number) * 10,
    total: (input) => (input as { each: number[] }).each.reduce((a, b) => a + b, 0),
  });
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  try {
    const base = inspector.url;
    const flows = await getJson(`${base}api/flows`);
    assert.equal(flows.status, 200);
    const [shop] = flows.body;
    assert.deepEqual(
      shop.steps.map((s: { step_slug: string; step_type: string; deps: string[] }) => [
        s.step_slug,
        s.step_type,
        s.deps,
      ]),
      [["fetch", "single", []], ["each", "map", ["fetch"]], ["total", "single", ["each"]]],
    );
    // dagre lays the chain out left to right.
    const x = Object.fromEntries(
      shop.layout.nodes.map((n: { step_slug: string; x: number }) => [n.step_slug, n.x]),
    );
    assert.ok(x.fetch < x.each && x.each < x.total, JSON.stringify(x));
    assert.equal(shop.layout.edges.length, 2);

    const runs = await getJson(`${base}api/runs?flow=shop&status=completed`);
    assert.deepEqual(runs.body.runs.map((r: { run_id: string }) => r.run_id), [run.run_id]);

    const detail = await getJson(`${base}api/runs/${run.run_id}`);
    assert.equal(detail.body.run.status, "completed");
    assert.deepEqual(detail.body.run.output, { total: 30 });
    const inputs = detail.body.tasks.map((t: { step_slug: string; input: unknown }) => [
      t.step_slug,
      t.input,
    ]);
    assert.deepEqual(inputs, [
      ["fetch", { run: { n: 2 } }],
      ["each", 1],
      ["each", 2],
      ["total", { run: { n: 2 }, each: [10, 20] }],
    ]);

    assert.equal((await getJson(`${base}api/runs/not-a-uuid`)).status, 400);
    const missing = await getJson(`${base}api/runs/00000000-0000-4000-8000-000000000000`);
    assert.equal(missing.status, 404);
    assert.match(missing.body.error, /no run 00000000/);
    assert.equal((await getJson(`${base}api/runs?limit=0`)).status, 400);
    assert.equal((await getJson(`${base}api/runs?flow=bad-slug`)).status, 400);
    const page = await fetch(base);
    assert.match(await page.text(), /edgeflow inspector/);
    const script = await fetch(`${base}app.js`);
    assert.match(script.headers.get("content-type")!, /javascript/);
    await script.body?.cancel();
    await (await fetch(`${base}style.css`)).body?.cancel();
  } finally {
    await inspector.close();
  }
});

dbTest("a failed task's error reaches the run's details", async (db) => {
  await define(db.sql, FLOW);
  const run = await startFlow(db.sql, { flowSlug: "shop", input: {} });
  const [task] = await takeTasks(db.sql, "shop");
  await failOne(db.sql, task, "the shop is closed");
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  try {
    const detail = await getJson(`${inspector.url}api/runs/${run.run_id}`);
    assert.equal(detail.body.run.status, "failed");
    assert.equal(detail.body.tasks[0].error_message, "the shop is closed");
    assert.equal(detail.body.steps[0].error_message, "the shop is closed");
  } finally {
    await inspector.close();
  }
});

dbTest(
  "off loopback every request needs the token; state changes need the page's header",
  async (db) => {
    const inspector = await startInspector({ dbUrl: db.url, host: "0.0.0.0", port: 0 });
    try {
      assert.ok(inspector.token && inspector.token.length >= 32);
      const url = new URL(inspector.url);
      assert.equal(url.searchParams.get("token"), inspector.token);
      const api = new URL("api/flows", url);
      assert.equal((await getJson(api.href)).status, 401);
      assert.equal((await getJson(`${api.href}?token=wrong`)).status, 401);
      assert.equal((await getJson(`${api.href}?token=${inspector.token}`)).status, 200);
      const header = await getJson(api.href, {
        headers: { authorization: `Bearer ${inspector.token}` },
      });
      assert.equal(header.status, 200);
      // The page gets the token as a cookie, which its later requests carry.
      const page = await fetch(url);
      await page.body?.cancel();
      const cookie = page.headers.get("set-cookie")!.split(";")[0];
      assert.match(page.headers.get("set-cookie")!, /HttpOnly; SameSite=Strict/);
      assert.equal((await getJson(api.href, { headers: { cookie } })).status, 200);
      const post = await getJson(
        new URL("api/runs/00000000-0000-4000-8000-000000000000/cancel", url).href,
        { method: "POST", headers: { cookie } },
      );
      assert.equal(post.status, 403);
    } finally {
      await inspector.close();
    }
  },
);

dbTest("on loopback no token is needed, but the Host header must name the server", async (db) => {
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  try {
    assert.equal(inspector.token, undefined);
    const port = new URL(inspector.url).port;
    assert.equal((await getJson(`${inspector.url}api/flows`)).status, 200);
    assert.equal((await getJson(`http://localhost:${port}/api/flows`)).status, 200);
    // fetch cannot set Host, so this one request is written by hand.
    const connection = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    await connection.write(new TextEncoder().encode(
      `GET /api/flows HTTP/1.1\r\nHost: attacker.example:${port}\r\nConnection: close\r\n\r\n`,
    ));
    const answer = await new Response(connection.readable).text();
    assert.match(answer, /^HTTP\/1\.1 421 /);
  } finally {
    await inspector.close();
  }
});

/** Reads server-sent events until `until` returns true for one; gives back every data line. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  until: (data: string) => boolean,
): Promise<string[]> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const seen: string[] = [];
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the event stream ended after ${JSON.stringify(seen)}`);
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").find((line) => line.startsWith("data: "))?.slice(6);
        if (data === undefined) continue;
        seen.push(data);
        if (until(data)) return seen;
      }
    }
  } finally {
    await reader.cancel();
  }
}

dbTest("events: the stream carries the core's notifications for the run it follows", async (db) => {
  await define(db.sql, FLOW);
  const run = await startFlow(db.sql, { flowSlug: "shop", input: {} });
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  try {
    const response = await fetch(`${inspector.url}api/events?run=${run.run_id}&flow=shop`);
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const body = response.body!;
    const [reading, rest] = body.tee();
    // Listening has begun once the ready event arrives; then the task starts.
    const ready = readEvents(reading, (data) => data === "{}");
    await ready;
    const events = readEvents(rest, (data) => data.includes("run:completed"));
    await runUntilIdle(db.sql, "shop", { fetch: () => [], each: () => 0, total: () => 1 });
    const seen = await events;
    const last = JSON.parse(seen.at(-1)!);
    assert.equal(last.channel, `pgflow:run:${run.run_id}`);
    assert.equal(last.payload.run_id, run.run_id);
  } finally {
    await inspector.close();
  }
});

const RUN_COUNT = 100_000;

async function insertRuns(sql: Sql): Promise<void> {
  // Set-based: two flows, three statuses, one run a second.
  await sql.unsafe(`
    insert into pgflow.runs (flow_slug, status, input, started_at, completed_at, failed_at)
    select case when i % 2 = 0 then 'shop' else 'mill' end, st.status, '{}'::jsonb,
           timestamptz '2026-01-01' + i * interval '1 second',
           case when st.status = 'completed' then timestamptz '2026-06-01' end,
           case when st.status = 'failed' then timestamptz '2026-06-01' end
    from generate_series(1, ${RUN_COUNT}) i
    cross join lateral (
      select (array['started', 'completed', 'failed'])[1 + i % 3] as status) st;
    analyze pgflow.runs;`);
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

dbTest(`the runs page is an index scan at ${RUN_COUNT} runs, for every filter`, async (db) => {
  await define(
    db.sql,
    `${FLOW}
     select pgflow.create_flow('mill');
     select pgflow.add_step('mill', 'grind');`,
  );
  await insertRuns(db.sql);
  const [{ count }] = await db.sql<{ count: number }[]>`select count(*)::int from pgflow.runs`;
  assert.equal(count, RUN_COUNT);
  const cursor = {
    startedAt: "2026-01-01T12:00:00.000000Z",
    runId: "00000000-0000-4000-8000-000000000000",
  };
  const filters = [
    {},
    { flow: "shop" },
    { status: "failed" },
    { flow: "mill", status: "started" },
    { status: "completed" },
    { flow: "shop", status: "completed" },
  ];
  for (const filter of filters) {
    for (const position of [{}, { before: cursor }, { after: cursor }]) {
      const query = { ...filter, ...position, limit: 50 };
      const [row] = await db.sql<{ "QUERY PLAN": [{ Plan: PlanNode }] }[]>`
        explain (format json) ${runPageQuery(db.sql, query, 51)}`;
      const nodes = planNodes(row["QUERY PLAN"][0].Plan);
      const scans = nodes.filter((n) => n["Relation Name"] === "runs");
      const what = `${JSON.stringify(query)}: ${nodes.map((n) => n["Node Type"]).join(" > ")}`;
      assert.equal(nodes[0]["Node Type"], "Limit", what);
      assert.equal(scans.length, 1, what);
      assert.match(scans[0]["Node Type"], /^Index( Only)? Scan$/, what);
      assert.ok(!nodes.some((n) => n["Node Type"] === "Sort"), `no sort of all matches: ${what}`);
    }
  }
});

dbTest("paging through runs visits each run once, newest first", async (db) => {
  await define(
    db.sql,
    `${FLOW} select pgflow.create_flow('mill'); select pgflow.add_step('mill', 'grind');`,
  );
  await db.sql.unsafe(`
    insert into pgflow.runs (flow_slug, status, input, started_at)
    select 'shop', 'started', '{}'::jsonb, timestamptz '2026-01-01' + (i / 3) * interval '1 microsecond'
    from generate_series(1, 250) i`);
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  try {
    const ids: string[] = [];
    let next = "";
    const pages = [];
    do {
      const { body } = await getJson(`${inspector.url}api/runs?flow=shop&limit=40${next}`);
      pages.push(body);
      ids.push(...body.runs.map((r: { run_id: string }) => r.run_id));
      next = body.older ? `&before=${body.older.startedAt}~${body.older.runId}` : "";
    } while (next);
    assert.equal(ids.length, 250);
    assert.equal(new Set(ids).size, 250);
    const [expected] = await db.sql<{ ids: string[] }[]>`
      select array_agg(run_id::text order by started_at desc, run_id desc) as ids from pgflow.runs`;
    assert.deepEqual(ids, expected.ids);
    // Back from the second page to the first.
    const newer = pages[1].newer;
    const { body } = await getJson(
      `${inspector.url}api/runs?flow=shop&limit=40&after=${newer.startedAt}~${newer.runId}`,
    );
    assert.deepEqual(body.runs, pages[0].runs);
    assert.equal(body.newer, null);
  } finally {
    await inspector.close();
  }
});

dbTest("operations: cancel a started run; a finished run cannot be cancelled", async (db) => {
  await define(db.sql, FLOW);
  const run = await startFlow(db.sql, { flowSlug: "shop", input: {} });
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  try {
    const post = (path: string) =>
      getJson(`${inspector.url}api/runs/${path}`, {
        method: "POST",
        headers: { "x-edgeflow-inspector": "1" },
      });
    const cancelled = await post(`${run.run_id}/cancel`);
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.status, "cancelled");
    const resumed = await post(`${run.run_id}/resume`);
    assert.equal(resumed.body.status, "started");
    await runUntilIdle(db.sql, "shop", { fetch: () => [], each: () => 0, total: () => 1 });
    const refused = await post(`${run.run_id}/cancel`);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    const restarted = await post(`${run.run_id}/restart`);
    assert.equal(restarted.body.restart_of_run_id, run.run_id);
    assert.equal((await post("00000000-0000-4000-8000-000000000000/cancel")).status, 404);
  } finally {
    await inspector.close();
  }
});

dbTest(
  "the run detail shows each map task the input its handler got, for every kind of map",
  async (db) => {
    await define(
      db.sql,
      `select pgflow.create_flow('maps');
     select pgflow.add_step('maps', 'list');
     select pgflow.add_step('maps', 'each', step_type => 'map');
     select pgflow.add_step('maps', 'twice', deps_slugs => array['each'], step_type => 'map');
     select pgflow.add_step('maps', 'split', deps_slugs => array['list'], step_type => 'map');`,
    );
    const run = await startFlow(db.sql, { flowSlug: "maps", input: [1, null, { a: [2] }] });
    const shown = async () => {
      const detail = await getRunDetail(db.sql, run.run_id);
      return new Map(detail!.tasks.map((t) => [`${t.step_slug}/${t.task_index}`, t.input]));
    };
    const handed = new Map<string, unknown>();
    for (
      let tasks = await takeTasks(db.sql, "maps");
      tasks.length > 0;
      tasks = await takeTasks(db.sql, "maps")
    ) {
      for (const task of tasks) handed.set(`${task.step_slug}/${task.task_index}`, task.input);
      // While the tasks run (their elements stored) and after (cleared), the same inputs.
      const now = await shown();
      for (const task of tasks) {
        const key = `${task.step_slug}/${task.task_index}`;
        assert.deepEqual(now.get(key), handed.get(key), key);
      }
      for (const task of tasks) {
        const output = task.step_slug === "list" ? ["x", "y"] : [task.step_slug, task.task_index];
        await completeTask(db.sql, {
          runId: run.run_id,
          stepSlug: task.step_slug,
          taskIndex: task.task_index,
          output,
        });
      }
    }
    assert.equal(handed.size, 1 + 3 + 3 + 2);
    assert.deepEqual(await shown(), handed);
  },
);
