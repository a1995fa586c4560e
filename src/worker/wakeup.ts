/**
 * Wake-up hints: the SQL core runs `pg_notify('pgflow:queue:<flow_slug>', '')` whenever it
 * queues messages that are visible at once. A worker whose connection delivers notifications
 * LISTENs on that channel and polls immediately when one arrives. Notifications are only
 * hints: a missed one costs latency (the idle wait still ends), never work.
 *
 * Whether notifications arrive is decided from evidence (`listen: "auto"`): the worker LISTENs
 * on a channel of its own and NOTIFYs it from its pool. Through a transaction pooler (Supabase's
 * Supavisor on 6543, pgbouncer in transaction mode) LISTEN is accepted but nothing arrives,
 * whatever the host or port; then the worker long-polls instead.
 *
 * The LISTEN connection is a pool of its own (see companionPool): postgres.js reconnects it
 * after an outage and subscribes again, and every (re)subscription wakes the poller, since
 * notifications sent meanwhile were lost.
 */
import { companionPool, type Sql } from "../db/connect.ts";
import { QUEUE_CHANNEL_PREFIX } from "../limits.ts";
import { errorText } from "./failure_message.ts";
import type { Logger } from "./logger.ts";
import type { ListenMode } from "./options.ts";

/** How long `listen: "auto"` waits for its test notification. */
export const LISTEN_PROBE_TIMEOUT_MS = 1_500;

export function wakeupChannel(queueName: string): string {
  return QUEUE_CHANNEL_PREFIX + queueName;
}

export interface Wakeups {
  /** Whether the worker LISTENs (else it long-polls). */
  listening: boolean;
  /** Why, for the startup log. */
  reason: string;
  /**
   * LISTENs on one more channel over the same connection (e.g. run cancellations);
   * `onNotify` runs for each notification and after each re-subscription. False when
   * the worker does not LISTEN or LISTEN failed (logged).
   */
  listenAlso(channel: string, onNotify: () => void): Promise<boolean>;
  /** Stops listening and closes the LISTEN connection. */
  close(): Promise<void>;
}

/**
 * Decides whether to LISTEN (the option, else a test notification) and, if so, LISTENs on the
 * queue's channel; `onWake` runs for each notification and after each re-subscription.
 */
export async function setUpWakeups(args: {
  sql: Sql;
  queueName: string;
  mode: ListenMode;
  /** Whether anything notifies this queue (flows: the SQL core; plain queues: nobody). */
  announced: boolean;
  onWake(): void;
  log: Logger;
  probeTimeoutMs?: number;
}): Promise<Wakeups> {
  const polling = (reason: string): Wakeups => ({
    listening: false,
    reason,
    listenAlso: () => Promise.resolve(false),
    close: () => Promise.resolve(),
  });
  if (!args.announced) return polling("nothing notifies a plain queue");
  if (args.mode === false) return polling("option listen: false");

  const listener = companionPool(args.sql);
  const close = () => listener.end({ timeout: 1 }).catch(() => {});
  let reason = "option listen: true";
  if (args.mode === "auto") {
    const timeoutMs = args.probeTimeoutMs ?? LISTEN_PROBE_TIMEOUT_MS;
    const probe = await notificationsArrive(listener, args.sql, timeoutMs);
    if (!probe.ok) {
      await close();
      return polling(probe.reason);
    }
    reason = probe.reason;
  }
  const channel = wakeupChannel(args.queueName);
  let subscriptions = 0;
  try {
    await listener.listen(channel, () => args.onWake(), () => {
      if (subscriptions++ === 0) return;
      args.log.info("listening for wake-ups again", { channel });
      args.onWake();
    });
  } catch (error) {
    args.log.warn("LISTEN failed; polling only", { channel, error: errorText(error) });
    await close();
    return polling(`LISTEN failed: ${errorText(error)}`);
  }
  const listenAlso = async (other: string, onNotify: () => void): Promise<boolean> => {
    try {
      await listener.listen(other, () => onNotify(), () => onNotify());
      return true;
    } catch (error) {
      args.log.warn("LISTEN failed", { channel: other, error: errorText(error) });
      return false;
    }
  };
  return { listening: true, reason, listenAlso, close };
}

/**
 * LISTENs on a fresh channel through `listener` and NOTIFYs it through `notifier` (another
 * connection, as the SQL core's notifications come from other sessions).
 */
export async function notificationsArrive(
  listener: Sql,
  notifier: Sql,
  timeoutMs: number,
): Promise<{ ok: boolean; reason: string }> {
  const channel = `edgeflow:probe:${crypto.randomUUID()}`;
  let arrived!: () => void;
  const received = new Promise<void>((resolve) => arrived = resolve);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const { unlisten } = await listener.listen(channel, () => arrived());
    const started = performance.now();
    try {
      await notifier`select pg_notify(${channel}, '')`;
      const ok = await Promise.race([
        received.then(() => true),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs)),
      ]);
      return ok
        ? {
          ok,
          reason: `a test notification arrived after ${Math.round(performance.now() - started)} ms`,
        }
        : {
          ok,
          reason: `a test notification did not arrive within ${timeoutMs} ms ` +
            `(a transaction pooler?)`,
        };
    } finally {
      clearTimeout(timer);
      await unlisten().catch(() => {});
    }
  } catch (error) {
    return { ok: false, reason: `the LISTEN test failed: ${errorText(error)}` };
  }
}
