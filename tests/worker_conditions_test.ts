/** The conditions example end to end through createWorker: skips, cascades, exhausted retries. */
import assert from "node:assert/strict";
import orderFulfillment from "../examples/order_fulfillment.ts";
import { startFlow } from "../src/db/runs.ts";
import type { FlowOutput } from "../src/dsl/mod.ts";
import { waitForRun, workerTest } from "./_support/worker.ts";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
function expectType<_T extends true>(): void {}

// hold_shipment may be skipped (after fraud_review, skip-cascade): the run output may lack it.
expectType<
  Equal<
    FlowOutput<typeof orderFulfillment>,
    {
      receipt: {
        orderId: string;
        total: number;
        points: number;
        wrapped: boolean;
        partnerNotified: boolean;
      };
      hold_shipment?: { held: string };
    }
  >
>();

workerTest(
  "order_fulfillment: conditions decide which steps run; skipped ones are absent",
  async (t) => {
    await t.run(orderFulfillment);
    const big = await startFlow(t.sql, {
      flowSlug: "order_fulfillment",
      input: {
        orderId: "A-1",
        member: true,
        giftWrap: false,
        items: [{ sku: "tv", qty: 1, price: 1500 }],
      },
    });
    const small = await startFlow(t.sql, {
      flowSlug: "order_fulfillment",
      input: { orderId: "offline-2", member: false, items: [{ sku: "pen", qty: 3, price: 2 }] },
    });

    assert.deepEqual((await waitForRun(t.sql, big.run_id)).output, {
      hold_shipment: { held: "A-1" },
      receipt: { orderId: "A-1", total: 1500, points: 10, wrapped: false, partnerNotified: true },
    });
    // The small order: no fraud review (and so no hold), no points, and the partner call
    // failed its only attempt: skipped, the receipt goes out anyway.
    assert.deepEqual((await waitForRun(t.sql, small.run_id)).output, {
      receipt: { orderId: "offline-2", total: 6, points: 0, wrapped: true, partnerNotified: false },
    });

    const states = await t.sql<
      { run_id: string; step_slug: string; status: string; skip_reason: string | null }[]
    >`
    select run_id, step_slug, status, skip_reason from pgflow.step_states
    where status = 'skipped' order by run_id = ${big.run_id} desc, step_slug`;
    assert.deepEqual(
      states.map((s) => [s.run_id === big.run_id ? "big" : "small", s.step_slug, s.skip_reason]),
      [
        ["big", "gift_wrap", "condition_unmet"],
        ["small", "fraud_review", "condition_unmet"],
        ["small", "hold_shipment", "dependency_skipped"],
        ["small", "loyalty_points", "condition_unmet"],
        ["small", "notify_partner", "handler_failed"],
      ],
    );
    const [partner] = await t.sql`
    select error_message from pgflow.step_states where run_id = ${small.run_id} and step_slug = 'notify_partner'`;
    assert.match(partner.error_message, /partner API unreachable/);
  },
);
