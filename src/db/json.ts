/**
 * Serialises a value for a jsonb parameter, refusing what JSON cannot hold.
 * Callers bind it as `(${text}::text)::jsonb`: postgres.js would JSON-encode a
 * string bound straight to a jsonb parameter, and `sql.json(null)` binds SQL NULL.
 */
export function toJsonText(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TypeError(`${what} is not JSON-serialisable: ${reason}`);
  }
  if (text === undefined) {
    throw new TypeError(`${what} is not JSON-serialisable: got ${typeof value}`);
  }
  return text;
}
