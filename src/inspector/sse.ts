/**
 * Server-sent events: one stream per page, ended when the page goes away (the stream is
 * cancelled) or when the server stops.
 */
import type { EventHub } from "./events.ts";

/** A comment line every so often keeps proxies and the browser from timing the stream out. */
const KEEPALIVE_MS = 15_000;

export class EventStreams {
  #open = new Set<() => void>();

  constructor(private readonly hub: EventHub) {}

  /** A text/event-stream response sending `{channel, payload}` for each notification. */
  open(channels: readonly string[]): Response {
    const encoder = new TextEncoder();
    let close = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        let closed = false;
        const send = (text: string) => {
          if (!closed) controller.enqueue(encoder.encode(text));
        };
        const unsubscribe = await this.hub.subscribe(channels, (channel, payload) => {
          send(`data: ${JSON.stringify({ channel, payload: parsePayload(payload) })}\n\n`);
        });
        const keepalive = setInterval(() => send(": keepalive\n\n"), KEEPALIVE_MS);
        close = () => {
          if (closed) return;
          closed = true;
          clearInterval(keepalive);
          this.#open.delete(close);
          unsubscribe().catch(() => {});
          try {
            controller.close();
          } catch {
            // The page went away first.
          }
        };
        this.#open.add(close);
        send(`retry: 2000\nevent: ready\ndata: {}\n\n`);
      },
      cancel: () => close(),
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  /** Ends every open stream (the server is stopping). */
  closeAll(): void {
    for (const close of [...this.#open]) close();
  }
}

function parsePayload(payload: string): unknown {
  try {
    return JSON.parse(payload);
  } catch {
    return payload;
  }
}
