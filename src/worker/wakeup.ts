/**
 * Wake-up hints: the SQL core runs `pg_notify('pgflow:queue:<flow_slug>', '')` whenever it
 * queues messages that are visible at once. A worker on a direct connection LISTENs on that
 * channel and polls immediately when one arrives. Notifications are only hints: a missed one
 * costs latency (the long poll still finds the message), never work.
 */
import type { Sql } from "../db/connect.ts";
import { QUEUE_CHANNEL_PREFIX } from "../limits.ts";
import { errorText } from "./failure_message.ts";
import type { Logger } from "./logger.ts";

export function wakeupChannel(queueName: string): string {
  return QUEUE_CHANNEL_PREFIX + queueName;
}

/**
 * LISTENs on the queue's channel; `onWake` runs for each notification and after each
 * (re)connection of the listening connection, when notifications may have been missed.
 * Returns `unlisten`, or `undefined` (logged) when LISTEN failed and the worker polls only.
 */
export function listenForWakeups(
  sql: Sql,
  queueName: string,
  onWake: () => void,
  log: Logger,
): Promise<{ unlisten(): Promise<void> } | undefined> {
  return listenOn(sql, wakeupChannel(queueName), onWake, log);
}

/**
 * LISTENs on `channel`; `onNotify` runs for each notification and after each (re)connection.
 * Returns `unlisten`, or `undefined` (logged) when LISTEN failed.
 */
export async function listenOn(
  sql: Sql,
  channel: string,
  onNotify: () => void,
  log: Logger,
): Promise<{ unlisten(): Promise<void> } | undefined> {
  try {
    const { unlisten } = await sql.listen(channel, () => onNotify(), () => onNotify());
    log.debug("listening", { channel });
    return {
      async unlisten() {
        try {
          await unlisten();
        } catch {
          // The pool may already be closing.
        }
      },
    };
  } catch (error) {
    log.warn("LISTEN failed; polling only", { channel, error: errorText(error) });
    return undefined;
  }
}
