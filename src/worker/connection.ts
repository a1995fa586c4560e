/**
 * Where the worker's database connection comes from, and whether it may LISTEN.
 * Order: the `sql` option, `connectionString`, then env EDGE_WORKER_DB_URL, SUPABASE_DB_URL,
 * DATABASE_URL. A pool the worker opens itself is closed on shutdown; a given `sql` is not.
 */
import { connect, type Sql } from "../db/connect.ts";
import type { ListenMode } from "./options.ts";

export const CONNECTION_ENV_VARS = ["EDGE_WORKER_DB_URL", "SUPABASE_DB_URL", "DATABASE_URL"];

export interface WorkerConnection {
  sql: Sql;
  /** `true` when the worker opened the pool (and so closes it). */
  owned: boolean;
  /** Where it came from, for logs (never the URL itself: it holds a password). */
  source: string;
  /** Whether to LISTEN for wake-ups. */
  listen: boolean;
}

export function resolveConnection(args: {
  sql?: Sql;
  connectionString?: string;
  env: Record<string, string | undefined>;
  maxPgConnections: number;
  listen: ListenMode;
  applicationName: string;
}): WorkerConnection {
  if (args.sql) {
    const options = args.sql.options as { host?: string[]; port?: number[] } | undefined;
    return {
      sql: args.sql,
      owned: false,
      source: "option sql",
      listen: decideListen(args.listen, options?.host?.[0], options?.port?.[0]),
    };
  }
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
  const { host, port } = hostAndPort(url);
  return {
    sql: connect(url, { max: args.maxPgConnections, applicationName: args.applicationName }),
    owned: true,
    source,
    listen: decideListen(args.listen, host, port),
  };
}

/**
 * `"auto"` listens unless the connection goes through a transaction pooler (Supabase's
 * Supavisor on port 6543 or a `*.pooler.supabase.com` host), where LISTEN does not work.
 */
export function decideListen(mode: ListenMode, host?: string, port?: number): boolean {
  if (mode !== "auto") return mode;
  if (port === 6543) return false;
  if (host && /(^|\.)pooler\.supabase\.com$/i.test(host)) return false;
  return true;
}

function hostAndPort(url: string): { host?: string; port?: number } {
  try {
    const parsed = new URL(url);
    return {
      host: parsed.hostname || undefined,
      port: parsed.port ? Number(parsed.port) : undefined,
    };
  } catch {
    return {};
  }
}
