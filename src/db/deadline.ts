/** A time limit for one query, enforced by the client (it also works when the server is gone). */

/** Thrown when a query got no answer in time; it was cancelled. */
export class QueryTimeoutError extends Error {
  readonly code = "QUERY_TIMEOUT";
  constructor(what: string, ms: number) {
    super(`${what}: no answer from the database within ${ms} ms; cancelled`);
    this.name = "QueryTimeoutError";
  }
}

/**
 * Resolves or rejects like `query`, unless it takes longer than `ms`: then the query is
 * cancelled (so it stops holding a pool connection or running on the server) and this rejects
 * with a QueryTimeoutError. A cancel that cannot reach the server is ignored.
 */
export async function withDeadline<T>(
  query: Promise<T> & { cancel(): unknown },
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new QueryTimeoutError(what, ms));
      Promise.resolve().then(() => query.cancel()).catch(() => {});
    }, ms);
  });
  try {
    return await Promise.race([query, expired]);
  } finally {
    clearTimeout(timer);
    // After a cancel the query rejects too; nobody waits for it any more.
    query.catch(() => {});
  }
}
