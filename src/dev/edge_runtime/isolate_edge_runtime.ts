/**
 * Runs inside an instance. Defines the `EdgeRuntime` global with only `waitUntil(promise)`,
 * as on Supabase: the instance is kept alive until every such promise settles (the host
 * counts them; an instance with none pending and no open request may be dropped early). A
 * rejected promise is logged, not rethrown.
 */

export interface EdgeRuntimeGlobal {
  waitUntil<T>(promise: Promise<T>): Promise<T>;
}

/** `track(+1)` when background work starts, `track(-1)` when it settles. */
export function installEdgeRuntimeGlobal(track: (delta: 1 | -1) => void): void {
  const edgeRuntime: EdgeRuntimeGlobal = Object.freeze({
    waitUntil<T>(promise: Promise<T>): Promise<T> {
      track(1);
      Promise.resolve(promise).then(
        () => track(-1),
        (error) => {
          track(-1);
          console.error("EdgeRuntime.waitUntil: the promise rejected:", error);
        },
      );
      return promise;
    },
  });
  Object.defineProperty(globalThis, "EdgeRuntime", {
    value: edgeRuntime,
    enumerable: false,
    configurable: false,
    writable: false,
  });
}
