/**
 * Typed calls on pgmq queues: creating, reading (phase 1 of a worker's poll), and settling
 * messages by hand (visibility, archive). Tasks of flows go through src/db/tasks.ts.
 */
import { QUEUE_CHANNEL_PREFIX } from "../limits.ts";
import type postgres from "postgres";
import type { Sql } from "./connect.ts";
import { literal, oneTrip } from "./one_trip.ts";
import type { Json, QueueMessage, TaskMessage } from "./types.ts";

/** Creates the queue when it does not exist (pgmq.create is idempotent). */
export async function ensureQueue(sql: Sql, queueName: string): Promise<void> {
  await sql`select pgmq.create(${queueName})`;
}

/** Non-blocking read: claims up to `qty` visible messages for `vt` seconds. */
export async function readMessages<T = Json>(
  sql: Sql,
  args: { queueName: string; vt: number; qty: number },
): Promise<QueueMessage<T>[]> {
  const rows = await oneTrip(sql)<QueueMessage<T>[]>`
    select * from pgmq.read(${literal.text(args.queueName, "queue name")},
                            ${literal.int(args.vt, "vt")}, ${literal.int(args.qty, "qty")})`;
  return normalizeMsgIds(rows);
}

export interface ReadWithPollArgs {
  queueName: string;
  /** Seconds the read messages stay hidden from other readers. */
  vt: number;
  qty: number;
  maxPollSeconds?: number;
  pollIntervalMs?: number;
}

/**
 * Long poll (`pgmq.read_with_poll`): claims up to `qty` messages, waiting up to
 * `maxPollSeconds` for one. Returns the pending query so the caller can cancel it
 * (`query.cancel()`); run it on a connection nothing else uses.
 */
export function readWithPoll<T = TaskMessage>(
  sql: Sql,
  args: ReadWithPollArgs,
): postgres.PendingQuery<QueueMessage<T>[]> {
  // In one round trip: a plain-queue worker without LISTEN waits on this for new messages.
  return oneTrip(sql)<QueueMessage<T>[]>`
    select * from pgmq.read_with_poll(
      queue_name => ${literal.text(args.queueName, "queue name")},
      vt => ${literal.int(args.vt, "vt")},
      qty => ${literal.int(args.qty, "qty")},
      max_poll_seconds => ${literal.int(args.maxPollSeconds ?? 5, "maxPollSeconds")},
      poll_interval_ms => ${literal.int(args.pollIntervalMs ?? 100, "pollIntervalMs")})`;
}

/**
 * Milliseconds until the queue's next hidden message becomes visible (0 or less: one is
 * visible now), `null` when the queue is empty. Reads pgmq's queue table (`pgmq.q_<name>`,
 * indexed on vt); the difference is computed in the database, so clocks need not agree.
 */
export async function millisUntilNextVisible(
  sql: Sql,
  queueName: string,
): Promise<number | null> {
  const [row] = await sql<{ ms: number | null }[]>`
    select (extract(epoch from min(vt) - clock_timestamp()) * 1000)::float8 as ms
    from ${sql("pgmq." + `q_${queueName.toLowerCase()}`)}`;
  return row.ms === null ? null : Math.ceil(row.ms);
}

/** Sets each message's visibility timeout to its own offset (seconds from now). */
export function setVtBatch(
  sql: Sql,
  args: { queueName: string; msgIds: number[]; vtOffsets: number[] },
): Promise<QueueMessage[]> {
  return sql<QueueMessage[]>`
    select * from pgflow.set_vt_batch(
      ${args.queueName}, ${args.msgIds}::bigint[], ${args.vtOffsets}::int[])`;
}

/**
 * Makes claimed messages visible again at once (a stopping worker gives them back), and
 * wakes the workers that LISTEN on the queue.
 */
export async function releaseMessages(
  sql: Sql,
  queueName: string,
  msgIds: number[],
): Promise<void> {
  if (msgIds.length === 0) return;
  await sql`
    select count(*), pg_notify(${QUEUE_CHANNEL_PREFIX + queueName}, '')
    from pgflow.set_vt_batch(${queueName}, ${msgIds}::bigint[], ${msgIds.map(() => 0)}::int[])`;
}

/** Hides a message for `vt` seconds from now (a queue worker's retry delay). */
export async function delayMessage(
  sql: Sql,
  queueName: string,
  msgId: number,
  vt: number,
): Promise<void> {
  await sql`select 1 from pgmq.set_vt(${queueName}, ${msgId}::bigint, ${vt}::int)`;
}

export async function archiveMessage(sql: Sql, queueName: string, msgId: number): Promise<void> {
  await sql`select pgmq.archive(${queueName}, ${msgId}::bigint)`;
}

/** int8 columns are numbers with edgeflow's pool; a caller's own pool may give strings. */
export function normalizeMsgIds<T extends { msg_id: number }>(rows: T[]): T[] {
  for (const row of rows) {
    if (typeof row.msg_id !== "number") row.msg_id = Number(row.msg_id);
  }
  return rows;
}
