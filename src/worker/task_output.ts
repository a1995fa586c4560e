/** Checks that a handler's output can be stored as jsonb, with an error that says why not. */

/**
 * The output as JSON text. Falsy values (0, false, "", null) are kept. A function, symbol,
 * BigInt, cycle or `undefined` (at the top, or anywhere a function or symbol appears) is
 * refused with a TypeError naming `what`; `undefined` object properties are dropped as
 * JSON.stringify does.
 */
export function serializeOutput(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (key, entry) => {
      if (typeof entry === "function" || typeof entry === "symbol") {
        throw new TypeError(`${where(key)} is a ${typeof entry}`);
      }
      return entry;
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TypeError(`${what} returned a value that is not JSON: ${reason}`);
  }
  if (text === undefined) {
    throw new TypeError(`${what} returned a value that is not JSON: got undefined`);
  }
  return text;
}

function where(key: string): string {
  return key === "" ? "the value" : `the value at key "${key}"`;
}
