/**
 * A flow with conditions and skips: fulfil an order.
 *
 * - `validate` checks the order; `fraud_review` runs only when validation flagged it
 *   (`if`), and with it skipped `hold_shipment` is skipped too (`skip-cascade`).
 * - `loyalty_points` runs only for members (`if` on the flow input); a skipped step is an
 *   absent key, so `receipt` sees `loyalty_points` as optional.
 * - `gift_wrap` runs unless the order says `giftWrap: false` (`ifNot`).
 * - `notify_partner` calls a flaky partner: when its retries run out the step is skipped
 *   (`whenExhausted: "skip"`) and the order goes on without it.
 */
import { Flow } from "../src/dsl/mod.ts";

export interface Order {
  orderId: string;
  member: boolean;
  giftWrap?: boolean;
  items: { sku: string; qty: number; price: number }[];
}

export default new Flow<Order>({ slug: "order_fulfillment", maxAttempts: 2, baseDelay: 0 })
  .step({ slug: "validate" }, ({ run }) => {
    const total = run.items.reduce((sum, item) => sum + item.qty * item.price, 0);
    return { total, flagged: total > 1000 };
  })
  .step(
    {
      slug: "fraud_review",
      dependsOn: ["validate"],
      if: { validate: { flagged: true } },
      whenUnmet: "skip-cascade",
    },
    ({ validate }) => ({ reviewed: true, total: validate.total }),
  )
  .step(
    { slug: "hold_shipment", dependsOn: ["fraud_review"] },
    ({ run }) => ({ held: run.orderId }),
  )
  .step(
    { slug: "loyalty_points", if: { member: true } },
    ({ run }) => run.items.reduce((sum, item) => sum + item.qty, 0) * 10,
  )
  .step(
    { slug: "gift_wrap", ifNot: { giftWrap: false } },
    ({ run }) => `wrapped ${run.items.length} item(s)`,
  )
  .step(
    { slug: "notify_partner", whenExhausted: "skip", maxAttempts: 1 },
    ({ run }) => {
      if (run.orderId.startsWith("offline-")) throw new Error("partner API unreachable");
      return { notified: run.orderId };
    },
  )
  .step(
    {
      slug: "receipt",
      dependsOn: ["validate", "loyalty_points", "gift_wrap", "notify_partner"],
    },
    ({ run, validate, loyalty_points, gift_wrap, notify_partner }) => ({
      orderId: run.orderId,
      total: validate.total,
      points: loyalty_points ?? 0,
      wrapped: gift_wrap !== undefined,
      partnerNotified: notify_partner !== undefined,
    }),
  );
