/**
 * Phase 1 of the two-phase poll: claims messages from the queue and hands them on (a flow
 * worker's phase 2 is `start_tasks`, in flow_worker.ts; its immediate reads do both phases in
 * one statement).
 *
 * At most one read is outstanding at any time. When there is reason to think messages are
 * waiting (start, a wake-up, or a read that came back full), it reads at once with the
 * non-blocking `pgmq.read`, for as many messages as there are free slots (at most `batchSize`).
 * Otherwise the worker is idle, and waits in one of two ways:
 *
 * - `listen` (a flow worker on a direct connection): the SQL core announces new visible
 *   messages with a notification, which wakes the poller at once. Messages nobody announces
 *   (retries after their backoff, start delays, tasks recovered after a timeout) become visible
 *   at a known time, the earliest `vt` of the queue: the poller sleeps until then, at most
 *   `maxPollSeconds`, and reads. Every read is a short statement.
 * - `long-poll` (no LISTEN: behind a transaction pooler, or a plain queue whose senders do not
 *   notify): `pgmq.read_with_poll` for up to `maxPollSeconds`, checking every `pollIntervalMs`,
 *   on a connection of its own (postgres.js would queue other queries behind it). Stop cancels it.
 *   A flow worker's long poll also starts the tasks it claims, in the same statement
 *   (`longPollNow`: `pgflow.read_and_start_tasks_with_poll`).
 *   Only an idle worker long-polls: while tasks run, a long poll would hold the free slots and
 *   see what a completion made ready only at its next check, so each DAG level would wait.
 *   Instead a completion claims the tasks it readied (`complete_tasks_and_claim`) or wakes the
 *   poller for a short read, and other runs' messages are read every `pollIntervalMs`.
 *
 * Why not long-poll with LISTEN too: `read_with_poll` is one statement, so one transaction,
 * and `pgmq.read`'s `FOR UPDATE SKIP LOCKED` keeps the lock on a row it found changed by a
 * concurrent claim (PostgreSQL locks the newest row version, then the re-check of `vt` fails).
 * Such a lock lasts until the long poll ends and blocks that task's `complete_task` (which
 * archives the message) for up to `maxPollSeconds`. Short reads release such locks at once;
 * never running two reads of one worker at a time keeps a worker from doing it to itself.
 */
import type { Sql } from "../db/connect.ts";
import {
  millisUntilNextVisible,
  normalizeMsgIds,
  readMessages,
  readWithPoll,
  releaseMessages,
} from "../db/queue.ts";
import type { Json, QueueMessage } from "../db/types.ts";
import type { Executor } from "./executor.ts";
import { FailureEpisode } from "./failure_episode.ts";
import { errorText } from "./failure_message.ts";
import type { Logger } from "./logger.ts";

export type IdleMode = "listen" | "long-poll";

/** A long poll under way: how many messages it claimed and took over, and how to end it. */
export interface LongPoll {
  claimed: Promise<number>;
  cancel(): unknown;
}

export interface PollerOptions {
  /** The shared pool: immediate reads and releases. */
  sql: Sql;
  /** Long-poll mode: a connection nothing else uses. */
  longPollSql?: Sql;
  idleMode: IdleMode;
  queueName: string;
  /** Seconds a claimed message stays hidden. */
  visibilityTimeout: number;
  batchSize: number;
  maxPollSeconds: number;
  pollIntervalMs: number;
  executor: Executor;
  /** Takes over the claimed messages and one reserved slot for each. */
  dispatch(messages: QueueMessage<Json>[]): void;
  /**
   * Replaces the default immediate read (`pgmq.read`, then `dispatch`): claims up to `qty`
   * messages now and takes them over, releasing the reserved slots it does not use. Returns how
   * many it claimed. A flow worker reads and starts its tasks in one statement this way.
   */
  readNow?(qty: number): Promise<number>;
  /**
   * Replaces the default long poll (`pgmq.read_with_poll`, then `dispatch`) as `readNow` replaces
   * the read: waits on `sql` for up to `maxPollSeconds` for messages, claims and takes over up
   * to `qty`, releasing the reserved slots it does not use. `claimed` says how many it took.
   */
  longPollNow?(sql: Sql, qty: number): LongPoll;
  log: Logger;
}

/**
 * Longest pause after failed reads. Short, so that polling resumes within a second of the
 * database's return; a wake-up (LISTEN is back) ends the pause at once.
 */
const MAX_ERROR_BACKOFF_MS = 1_000;

export class Poller {
  readonly #o: PollerOptions;
  readonly #trigger = new Trigger();
  readonly #stop = new AbortController();
  /** Something suggests messages are visible now. */
  #wakeRequested = true;
  /** The last read filled every slot it asked for: there may be more. */
  #moreLikely = false;
  #longPoll: LongPoll | undefined;
  #loop: Promise<void> | undefined;
  #errorBackoffMs = 0;
  /** One log line when reads start failing, one when they work again. */
  readonly #episode: FailureEpisode;
  /** Listen mode: when (performance.now()) the idle wait ends; undefined = ask the database. */
  #idleUntil: number | undefined;
  /** Long-poll mode while tasks run: when (performance.now()) to read again. */
  #busyReadAt: number | undefined;
  /** Counters for status and tests. */
  messagesRead = 0;
  reads = 0;
  longPolls = 0;
  idleWaits = 0;
  busyPauses = 0;

  constructor(options: PollerOptions) {
    if (options.idleMode === "long-poll" && !options.longPollSql) {
      throw new Error("Poller: long-poll mode needs longPollSql");
    }
    this.#o = options;
    this.#episode = new FailureEpisode(options.log, {
      failed: "poll failed",
      recovered: "polling recovered",
    });
  }

  get stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  /** Starts the loop (returns at once). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** A hint that messages may be visible now: read at once when a slot is free. */
  wake(): void {
    this.#wakeRequested = true;
    this.#trigger.fire();
  }

  /** Something changed (e.g. a slot was freed): look again without assuming new messages. */
  nudge(): void {
    this.#trigger.fire();
  }

  /**
   * A message may now be due earlier than the idle wait assumed (this worker just failed a
   * task, which the SQL core retries after a delay): ask the database again.
   */
  recheck(): void {
    this.#idleUntil = undefined;
    this.#trigger.fire();
  }

  /** Stops polling: cancels a long poll and waits for the outstanding read to be handed on. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.#stop.abort();
      this.#trigger.fire();
      try {
        await this.#longPoll?.cancel();
      } catch {
        // Already finished, or the cancel request could not be sent: it ends by itself.
      }
    }
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { executor, batchSize } = this.#o;
    while (!this.stopped) {
      const free = executor.free;
      if (free === 0) {
        await this.#trigger.wait();
      } else if (this.#wakeRequested || this.#moreLikely) {
        this.#wakeRequested = false;
        await this.#read(Math.min(batchSize, free));
      } else if (this.#o.idleMode === "long-poll" && free < executor.capacity) {
        // Busy: tasks run, or claimed ones are being started.
        await this.#pauseWhileBusy();
      } else if (this.#o.idleMode === "long-poll") {
        await this.#longPollOnce(Math.min(batchSize, free));
      } else {
        await this.#idle();
      }
    }
  }

  async #read(qty: number): Promise<void> {
    const { executor } = this.#o;
    this.#idleUntil = undefined;
    this.#busyReadAt = undefined;
    executor.reserve(qty);
    this.reads++;
    const read = this.#o.readNow ?? ((n: number) => this.#readMessages(n));
    let claimed = 0;
    try {
      claimed = await read(qty);
      this.messagesRead += claimed;
      this.#succeeded();
    } catch (error) {
      executor.release(qty);
      this.#wakeRequested = true;
      await this.#failed("read", error);
    }
    this.#moreLikely = claimed === qty;
  }

  async #longPollOnce(qty: number): Promise<void> {
    const { executor } = this.#o;
    executor.reserve(qty);
    this.longPolls++;
    const longPoll = this.#o.longPollNow ??
      ((sql: Sql, n: number) => this.#longPollMessages(sql, n));
    const poll = longPoll(this.#o.longPollSql!, qty);
    this.#longPoll = poll;
    let claimed = 0;
    try {
      claimed = await poll.claimed;
      this.messagesRead += claimed;
      this.#succeeded();
    } catch (error) {
      executor.release(qty);
      // A long poll cancelled by stop() ends with an error; that one is expected.
      if (!this.stopped) await this.#failed("long poll", error);
    } finally {
      this.#longPoll = undefined;
    }
    this.#moreLikely = claimed === qty;
  }

  /** The default read (`pgmq.read`, then `dispatch`); returns how many messages it claimed. */
  async #readMessages(qty: number): Promise<number> {
    const messages = await readMessages(this.#o.sql, {
      queueName: this.#o.queueName,
      vt: this.#o.visibilityTimeout,
      qty,
    });
    return this.#handOver(messages, qty);
  }

  /** The default long poll (`pgmq.read_with_poll`, then `dispatch`). */
  #longPollMessages(sql: Sql, qty: number): LongPoll {
    const query = readWithPoll<Json>(sql, {
      queueName: this.#o.queueName,
      vt: this.#o.visibilityTimeout,
      qty,
      maxPollSeconds: this.#o.maxPollSeconds,
      pollIntervalMs: this.#o.pollIntervalMs,
    });
    return {
      claimed: query.then((rows) => this.#handOver(normalizeMsgIds(rows), qty)),
      cancel: () => query.cancel(),
    };
  }

  /**
   * Long-poll mode with tasks running or being started: no long poll, which would hold the free slots and see
   * the tasks a completion makes ready only at its next check. A completion claims those
   * itself (`complete_tasks_and_claim`) or wakes the poller; other runs' messages are read
   * after `pollIntervalMs`.
   */
  async #pauseWhileBusy(): Promise<void> {
    this.busyPauses++;
    this.#busyReadAt ??= performance.now() + this.#o.pollIntervalMs;
    const waitMs = this.#busyReadAt - performance.now();
    if (waitMs > 0) {
      const timer = setTimeout(() => this.#trigger.fire(), waitMs);
      await this.#trigger.wait();
      clearTimeout(timer);
    }
    if (performance.now() >= this.#busyReadAt) this.#wakeRequested = true;
  }

  /**
   * Listen mode, nothing to read: sleep until the next hidden message is due (asked once per
   * idle spell), a wake-up, or a change such as a freed slot.
   */
  async #idle(): Promise<void> {
    if (this.#idleUntil === undefined) {
      this.idleWaits++;
      const capMs = this.#o.maxPollSeconds * 1000;
      let waitMs = capMs;
      try {
        const dueMs = await millisUntilNextVisible(this.#o.sql, this.#o.queueName);
        // Due already but not read: another reader is claiming it, or it just came due.
        // Looking again after pollIntervalMs keeps a contended queue from spinning.
        if (dueMs !== null) {
          waitMs = Math.min(capMs, dueMs > 0 ? dueMs : this.#o.pollIntervalMs);
        }
        this.#succeeded();
      } catch (error) {
        this.#episode.failed(error, { during: "next due" });
        waitMs = Math.min(capMs, Math.max(this.#o.pollIntervalMs, MAX_ERROR_BACKOFF_MS));
      }
      this.#idleUntil = performance.now() + waitMs;
    }
    // A notification may have arrived while asking: then read at once.
    if (this.#wakeRequested || this.stopped) return;
    const waitMs = this.#idleUntil - performance.now();
    if (waitMs <= 0) {
      this.#wakeRequested = true;
      return;
    }
    const timer = setTimeout(() => this.#trigger.fire(), waitMs);
    await this.#trigger.wait();
    clearTimeout(timer);
  }

  /**
   * Gives back the reserved slots no message took and dispatches the messages, or gives the
   * messages back to the queue when the poller has stopped meanwhile. Returns how many it took.
   */
  #handOver(messages: QueueMessage<Json>[], reserved: number): number {
    this.#o.executor.release(reserved - messages.length);
    if (messages.length === 0) return 0;
    if (!this.stopped) {
      this.#o.dispatch(messages);
      return messages.length;
    }
    const ids = messages.map((message) => message.msg_id);
    this.#o.executor.track(
      releaseMessages(this.#o.sql, this.#o.queueName, ids).then(
        () => this.#o.log.debug("gave back messages read while stopping", { count: ids.length }),
        (error) =>
          this.#o.log.warn("could not give back messages; they reappear after their timeout", {
            count: ids.length,
            error: errorText(error),
          }),
      ).finally(() => this.#o.executor.release(ids.length)),
    );
    return messages.length;
  }

  #succeeded(): void {
    this.#errorBackoffMs = 0;
    this.#episode.succeeded();
  }

  /** Logs the failure (once per episode) and pauses, until a wake-up or stop at the latest. */
  async #failed(during: string, error: unknown): Promise<void> {
    this.#episode.failed(error, { during });
    this.#errorBackoffMs = Math.min(
      MAX_ERROR_BACKOFF_MS,
      Math.max(this.#o.pollIntervalMs, this.#errorBackoffMs * 2),
    );
    const timer = setTimeout(() => this.#trigger.fire(), this.#errorBackoffMs);
    await this.#trigger.wait();
    clearTimeout(timer);
  }
}

/** An edge-triggered wake-up for one waiter; a fire with nobody waiting is remembered. */
class Trigger {
  #fired = false;
  #resolve: (() => void) | undefined;

  fire(): void {
    const resolve = this.#resolve;
    if (resolve) {
      this.#resolve = undefined;
      resolve();
    } else {
      this.#fired = true;
    }
  }

  wait(): Promise<void> {
    if (this.#fired) {
      this.#fired = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#resolve = resolve);
  }
}
