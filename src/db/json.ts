/** Serialises a value for a `::jsonb` parameter, refusing what JSON cannot hold. */
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
