/**
 * Where the worker's database connection comes from (whether it may LISTEN is found out by
 * trying: wakeup.ts). Order: the `sql` option, `connectionString`, then env EDGE_WORKER_DB_URL, SUPABASE_DB_URL,
 * DATABASE_URL. A pool the worker opens itself is closed on shutdown; a given `sql` is not.
 */
import { connect, type Sql } from "../db/connect.ts";

export const CONNECTION_ENV_VARS = ["EDGE_WORKER_DB_URL", "SUPABASE_DB_URL", "DATABASE_URL"];

export interface WorkerConnection {
  sql: Sql;
  /** `true` when the worker opened the pool (and so closes it). */
  owned: boolean;
  /** Where it came from, for logs (never the URL itself: it holds a password). */
  source: string;
}

export function resolveConnection(args: {
  sql?: Sql;
  connectionString?: string;
  env: Record<string, string | undefined>;
  maxPgConnections: number;
  applicationName: string;
}): WorkerConnection {
  if (args.sql) return { sql: args.sql, owned: false, source: "option sql" };
  let url = args.connectionString;
  let source = "option connectionString";
  if (!url) {
    for (const name of CONNECTION_ENV_VARS) {
      if (args.env[name]) {
        url = args.env[name];
        source = `env ${name}`;
        break;
      }
    }
  }
  if (!url) {
    throw new Error(
      `createWorker: no database to connect to: give the option sql or connectionString, ` +
        `or set one of the environment variables ${CONNECTION_ENV_VARS.join(", ")}`,
    );
  }
  return {
    sql: connect(url, { max: args.maxPgConnections, applicationName: args.applicationName }),
    owned: true,
    source,
  };
}
