/**
 * Run events for the page. The engine announces every state change of a run with pg_notify on
 * `pgflow:run:<run_id>` (ids and statuses only) and queues tasks with a notification on
 * `pgflow:queue:<flow>`. One connection LISTENs for every page: a channel is listened to while
 * at least one subscriber wants it.
 */
import type { Sql } from "../db/connect.ts";

type Listener = (channel: string, payload: string) => void;

interface Channel {
  subscribers: Set<Listener>;
  ready: Promise<{ unlisten(): Promise<void> }>;
}

export class EventHub {
  #channels = new Map<string, Channel>();

  constructor(private readonly listener: Sql) {}

  /** Calls `onEvent` for each notification on any of `channels`; resolves once listening. */
  async subscribe(channels: readonly string[], onEvent: Listener): Promise<() => Promise<void>> {
    const joined: string[] = [];
    try {
      for (const name of new Set(channels)) {
        let channel = this.#channels.get(name);
        if (!channel) {
          const subscribers = new Set<Listener>();
          const ready = this.listener.listen(name, (payload) => {
            for (const subscriber of subscribers) subscriber(name, payload);
          });
          channel = { subscribers, ready };
          this.#channels.set(name, channel);
        }
        channel.subscribers.add(onEvent);
        joined.push(name);
        await channel.ready;
      }
    } catch (error) {
      await this.#leave(joined, onEvent);
      throw error;
    }
    return () => this.#leave(joined, onEvent);
  }

  async #leave(names: readonly string[], onEvent: Listener): Promise<void> {
    for (const name of names) {
      const channel = this.#channels.get(name);
      if (!channel) continue;
      channel.subscribers.delete(onEvent);
      if (channel.subscribers.size > 0) continue;
      this.#channels.delete(name);
      await channel.ready.then((subscription) => subscription.unlisten(), () => {});
    }
  }
}
