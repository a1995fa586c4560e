/** Turns what a handler threw into the text stored in `error_message`, and errors into log text. */

/** Longest error text sent to the database. */
export const MAX_ERROR_LENGTH = 2_000;
/** Stack frames kept under the message. */
const MAX_FRAMES = 8;

/**
 * `Name: message` followed by the first stack frames, truncated to MAX_ERROR_LENGTH.
 * The worker's own timeout and shutdown errors carry no stack (it would point at the worker).
 */
export function failureMessage(error: unknown, withStack = true): string {
  let text: string;
  if (error instanceof Error) {
    const head = error.message ? `${error.name}: ${error.message}` : error.name;
    const frames = withStack && typeof error.stack === "string"
      ? error.stack.split("\n").filter((line) => /^\s+at /.test(line)).slice(0, MAX_FRAMES)
      : [];
    text = frames.length ? `${head}\n${frames.map((line) => line.trimEnd()).join("\n")}` : head;
  } else if (typeof error === "string") {
    text = error;
  } else {
    text = `non-Error value thrown: ${safeJson(error)}`;
  }
  return truncate(text, MAX_ERROR_LENGTH);
}

/** One line for logs. */
export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return typeof error === "string" ? error : safeJson(error);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

const TRUNCATED = "… [truncated]";

function truncate(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max - TRUNCATED.length) + TRUNCATED;
}
