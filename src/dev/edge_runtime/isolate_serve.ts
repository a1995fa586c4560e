/**
 * Runs inside an instance. Replaces `Deno.serve` so that, as on Supabase, the function's
 * `Deno.serve(handler)` (or `Deno.serve(options, handler)`, or `Deno.serve({ handler, ... })`)
 * opens no port: the runtime captures the handler and feeds it the requests routed to the
 * function. The returned server object behaves like a listening one (`finished`, `shutdown`,
 * `addr`, `ref`, `unref`); `onListen` is called with a placeholder address; `onError` answers
 * for a handler that throws. A function serves one handler: a second call throws.
 */

export type ServeHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

export interface CapturedServe {
  handler: ServeHandler;
  onError?: (error: unknown) => Response | Promise<Response>;
}

/** The address a captured server reports; no socket is behind it. */
export const PLACEHOLDER_ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 0 };

interface ServeOptionsLike {
  handler?: unknown;
  onError?: unknown;
  onListen?: unknown;
}

export function captureDenoServe(functionName: string, onServe: (captured: CapturedServe) => void) {
  let served = false;

  function serve(...args: unknown[]): Deno.HttpServer<Deno.NetAddr> {
    const [first, second] = args;
    const options: ServeOptionsLike = typeof first === "object" && first !== null ? first : {};
    const handler = typeof first === "function" ? first : second ?? options.handler;
    if (typeof handler !== "function") {
      throw new TypeError(`Deno.serve in function "${functionName}": no handler function given`);
    }
    if (served) {
      throw new Error(
        `Deno.serve was called twice in function "${functionName}": an edge function serves one handler`,
      );
    }
    served = true;
    onServe({
      handler: handler as ServeHandler,
      onError: typeof options.onError === "function"
        ? options.onError as CapturedServe["onError"]
        : undefined,
    });
    if (typeof options.onListen === "function") options.onListen(PLACEHOLDER_ADDR);
    return capturedServer();
  }

  Object.defineProperty(Deno, "serve", {
    value: serve,
    enumerable: true,
    configurable: true,
    writable: true,
  });
}

function capturedServer(): Deno.HttpServer<Deno.NetAddr> {
  let finish = () => {};
  const finished = new Promise<void>((resolve) => finish = resolve);
  const shutdown = () => {
    finish();
    return finished;
  };
  return {
    addr: PLACEHOLDER_ADDR,
    finished,
    shutdown,
    ref() {},
    unref() {},
    [Symbol.asyncDispose]: shutdown,
  };
}
