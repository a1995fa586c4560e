/**
 * A local PostgreSQL that cannot be set up on this machine, with a message
 * that says what and how to fix it. Entry points print it as one paragraph
 * instead of a stack trace (`exitOnSetupError`).
 */
export class PostgresSetupError extends Error {
  override name = "PostgresSetupError";
}

/** Runs an entry point; a PostgresSetupError ends the process with its message alone. */
export async function exitOnSetupError<T>(main: () => Promise<T>): Promise<T> {
  try {
    return await main();
  } catch (error) {
    if (!(error instanceof PostgresSetupError)) throw error;
    console.error(`edgeflow: ${error.message}`);
    Deno.exit(1);
  }
}
