/**
 * `deno task inspect` and `edgeflow inspect`: serves the inspector until Ctrl-C.
 * Database: --db-url, else DATABASE_URL, else the dev database of `deno task db`.
 */
import { parseArgs } from "node:util";
import { DEV_URL } from "../dev/dev_url.ts";
import { DEFAULT_PORT, startInspector } from "./server.ts";

export const INSPECT_USAGE =
  `usage: edgeflow inspect [--db-url url] [--host 127.0.0.1] [--port ${DEFAULT_PORT}] [--token t]

Serves a web page showing flows, runs and one run live. On a loopback host no token is needed;
on any other host every request needs the token (given with --token, else generated and
printed in the URL).`;

/** Parses the arguments and serves until the process is interrupted; returns an exit code. */
export async function inspectMain(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        "db-url": { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        token: { type: "string" },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${INSPECT_USAGE}`);
    return 2;
  }
  const port = Number(values.port ?? DEFAULT_PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(
      `--port must be an integer from 0 to 65535, got "${values.port}"\n\n${INSPECT_USAGE}`,
    );
    return 2;
  }
  if (values.token !== undefined && values.token.length < 16) {
    console.error("--token must be at least 16 characters");
    return 2;
  }
  const dbUrl = values["db-url"] ?? Deno.env.get("DATABASE_URL") ?? DEV_URL;
  const inspector = await startInspector({ dbUrl, host: values.host, port, token: values.token });
  console.log(`edgeflow inspector: ${inspector.url}`);
  if (inspector.token !== undefined && values.token === undefined) {
    console.log("(a token was generated: every request needs it; the URL above carries it)");
  }
  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await stopped.promise;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  await inspector.close();
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await inspectMain(Deno.args));
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
