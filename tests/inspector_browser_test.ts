/**
 * The inspector in a real browser: headless Chromium (Debian's `chromium`) driven by
 * playwright-core. The page shows a run moving from started to completed as tasks are driven
 * (no reload), a failed task's error, and the cancel button. Screenshots for the README:
 * `EDGEFLOW_SCREENSHOTS=1 deno task test tests/inspector_browser_test.ts` writes them to docs/.
 *
 * Skipped, with a warning, only when /usr/bin/chromium is missing (CI installs it).
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import type { BrowserContext, Page } from "playwright-core";
import { completeTask } from "../src/db/tasks.ts";
import { startFlow } from "../src/db/runs.ts";
import { startInspector } from "../src/inspector/server.ts";
import { dbTest, type TestDb } from "./_support/db.ts";
import { define, failOne, runUntilIdle, takeTasks } from "./_support/drive.ts";

const CHROMIUM = "/usr/bin/chromium";
const missing = await Deno.stat(CHROMIUM).then(() => undefined, () => `${CHROMIUM} is missing`);
if (missing) {
  console.warn(`inspector_browser_test skipped: ${missing} (apt-get install -y chromium)`);
}
// Screenshots are always taken; they replace the README's (docs/) with EDGEFLOW_SCREENSHOTS=1,
// so an ordinary test run leaves the work tree clean.
const SCREENSHOTS = Deno.env.get("EDGEFLOW_SCREENSHOTS") === "1"
  ? new URL("../docs/", import.meta.url)
  : new URL(`file://${await Deno.makeTempDir({ prefix: "edgeflow-screenshots-" })}/`);
if (SCREENSHOTS.pathname.includes("edgeflow-screenshots-")) {
  globalThis.addEventListener("unload", () => Deno.removeSync(SCREENSHOTS, { recursive: true }));
}

const FLOW = `
  select pgflow.create_flow('shop', max_attempts => 1);
  select pgflow.add_step('shop', 'fetch');
  select pgflow.add_step('shop', 'each', deps_slugs => array['fetch'], step_type => 'map');
  select pgflow.add_step('shop', 'price');
  select pgflow.add_step('shop', 'total', deps_slugs => array['each', 'price']);`;

/** Runs `fn` with a page of a fresh headless Chromium and an inspector on `db`. */
async function withBrowser(
  db: TestDb,
  fn: (page: Page, baseUrl: string) => Promise<void>,
): Promise<void> {
  const inspector = await startInspector({ dbUrl: db.url, port: 0 });
  const profile = await Deno.makeTempDir({ prefix: "edgeflow-chromium-" });
  let context: BrowserContext | undefined;
  try {
    // The machine's network is closed: nothing in the browser may try to reach it.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1100, height: 760 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const page = context.pages()[0] ?? await context.newPage();
    await fn(page, inspector.url);
  } finally {
    await context?.close();
    await inspector.close();
    await Deno.remove(profile, { recursive: true });
  }
}

const status = (page: Page, slug: string) =>
  page.getAttribute(`svg.dag [data-step="${slug}"]`, "data-status");

dbTest("the page shows a run move from started to completed live, without a reload", async (db) => {
  await define(db.sql, FLOW);
  for (let i = 0; i < 3; i++) {
    await startFlow(db.sql, { flowSlug: "shop", input: { order: i } });
    await runUntilIdle(db.sql, "shop", {
      fetch: () => ["a", "b"],
      each: (item) => `${item}!`,
      price: () => 3,
      total: () => 6,
    });
  }
  const run = await startFlow(db.sql, { flowSlug: "shop", input: { order: 42 } });
  await withBrowser(db, async (page, base) => {
    await page.goto(`${base}#/runs/${run.run_id}`);
    await page.waitForSelector('[data-run-status="started"]');
    assert.equal(await status(page, "fetch"), "started");
    assert.equal(await status(page, "each"), "created");
    assert.equal(await page.getAttribute('svg.dag [data-step="each"]', "data-type"), "map");
    // A mark on the window survives only if the page is never reloaded.
    await page.evaluate(() => Object.assign(globalThis, { inspectorMark: 1 }));

    const tasks = await takeTasks(db.sql, "shop");
    const fetchTask = tasks.find((task) => task.step_slug === "fetch")!;
    await completeTask(db.sql, {
      runId: run.run_id,
      stepSlug: "fetch",
      taskIndex: 0,
      output: ["apples", "pears"],
    });
    assert.equal(fetchTask.run_id, run.run_id);
    await page.waitForSelector('svg.dag [data-step="fetch"][data-status="completed"]');
    await page.waitForSelector('svg.dag [data-step="each"][data-status="started"]');
    await page.screenshot({ path: new URL("inspector-run-live.png", SCREENSHOTS).pathname });

    // price was taken with fetch (both are roots); report it, then run the rest.
    await completeTask(db.sql, { runId: run.run_id, stepSlug: "price", taskIndex: 0, output: 3 });
    await runUntilIdle(db.sql, "shop", {
      fetch: () => [],
      each: (item) => `${item}!`,
      price: () => 3,
      total: () => 6,
    });
    await page.waitForSelector('[data-run-status="completed"]');
    assert.equal(await status(page, "total"), "completed");
    assert.equal(await page.evaluate(() => "inspectorMark" in globalThis), true);
    assert.equal(await page.locator('#tasks tr[data-task^="each/"]').count(), 2);
    await page.locator('[data-task="each/0"] details').first().evaluate((el) =>
      (el as unknown as { open: boolean }).open = true
    );
    await page.screenshot({
      path: new URL("inspector-run-completed.png", SCREENSHOTS).pathname,
      fullPage: true,
    });

    // The runs list and the flows page.
    await page.goto(`${base}#/runs`);
    await page.waitForSelector(`#runs tr[data-run="${run.run_id}"]`);
    assert.equal(await page.locator("#runs tbody tr").count(), 4);
    await page.selectOption('select[name="status"]', "completed");
    await page.waitForFunction(() => location.hash.includes("status=completed"));
    await page.screenshot({ path: new URL("inspector-runs.png", SCREENSHOTS).pathname });
    await page.goto(`${base}#/flows`);
    await page.waitForSelector('section[data-flow="shop"] svg.dag [data-step="total"]');
    await page.screenshot({ path: new URL("inspector-flows.png", SCREENSHOTS).pathname });
  });
}, { ignore: missing !== undefined });

dbTest("the page shows a failed task's error", async (db) => {
  await define(db.sql, FLOW);
  const run = await startFlow(db.sql, { flowSlug: "shop", input: {} });
  await withBrowser(db, async (page, base) => {
    await page.goto(`${base}#/runs/${run.run_id}`);
    await page.waitForSelector('[data-run-status="started"]');
    const [task] = (await takeTasks(db.sql, "shop")).filter((t) => t.step_slug === "price");
    await failOne(db.sql, task, "price list unreachable: connection refused");
    await page.waitForSelector('[data-run-status="failed"]');
    assert.match(
      (await page.textContent('[data-error-step="price"]')) ?? "",
      /price: price list unreachable: connection refused/,
    );
    assert.match(
      (await page.textContent('[data-task-error="price/0"]')) ?? "",
      /connection refused/,
    );
    assert.equal(await status(page, "price"), "failed");
    await page.screenshot({
      path: new URL("inspector-run-failed.png", SCREENSHOTS).pathname,
      fullPage: true,
    });
  });
}, { ignore: missing !== undefined });

dbTest("the cancel button cancels a running run; restart starts a new one", async (db) => {
  await define(db.sql, FLOW);
  const run = await startFlow(db.sql, { flowSlug: "shop", input: { order: 7 } });
  await withBrowser(db, async (page, base) => {
    await page.goto(`${base}#/runs/${run.run_id}`);
    await page.waitForSelector('[data-run-status="started"]');
    assert.equal(await page.isDisabled("#resume"), true);
    await page.click("#cancel");
    await page.waitForSelector('[data-run-status="cancelled"]');
    const [row] = await db.sql<{ status: string }[]>`
      select status from pgflow.runs where run_id = ${run.run_id}`;
    assert.equal(row.status, "cancelled");
    assert.equal(await page.isDisabled("#cancel"), true);
    assert.equal(await status(page, "fetch"), "cancelled");
    await page.screenshot({
      path: new URL("inspector-run-cancelled.png", SCREENSHOTS).pathname,
      fullPage: true,
    });
    await page.click("#restart");
    await page.waitForFunction((old) => !location.hash.endsWith(old), run.run_id);
    await page.waitForSelector('[data-run-status="started"]');
    const [restart] = await db.sql<{ run_id: string }[]>`
      select run_id from pgflow.runs where restart_of_run_id = ${run.run_id}`;
    assert.ok(page.url().endsWith(`#/runs/${restart.run_id}`), page.url());
  });
}, { ignore: missing !== undefined });
