/** Turns what a handler threw into the text stored in `error_message`, and errors into log text. */

/** Longest error text sent to the database. */
export const MAX_ERROR_LENGTH = 2_000;
/** Stack frames kept in the log. */
const MAX_FRAMES = 8;

/**
 * The error's message (as pgflow's worker stores it), truncated to MAX_ERROR_LENGTH;
 * the stack goes to the log (`failureStack`), not to `error_message`.
 */
export function failureMessage(error: unknown): string {
  let text: string;
  if (error instanceof Error) {
    text = error.message || error.name;
  } else if (typeof error === "string") {
    text = error;
  } else {
    text = `non-Error value thrown: ${safeJson(error)}`;
  }
  return truncate(text, MAX_ERROR_LENGTH);
}

/** `Name: message` and the first stack frames, for the log; undefined for non-Errors. */
export function failureStack(error: unknown): string | undefined {
  if (!(error instanceof Error) || typeof error.stack !== "string") return undefined;
  const frames = error.stack.split("\n").filter((line) => /^\s+at /.test(line)).slice(
    0,
    MAX_FRAMES,
  );
  const head = error.message ? `${error.name}: ${error.message}` : error.name;
  return truncate([head, ...frames.map((line) => line.trimEnd())].join("\n"), MAX_ERROR_LENGTH);
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
