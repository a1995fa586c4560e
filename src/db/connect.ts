/** One place that opens postgres.js pools with the settings edgeflow relies on. */
import postgres from "postgres";

export type Sql = postgres.Sql;
export type TransactionSql = postgres.TransactionSql;

export interface ConnectOptions {
  /** Pool size. */
  max?: number;
  /** Name shown in pg_stat_activity. */
  applicationName?: string;
}

/**
 * How the pools ride out a database outage or restart. postgres.js's own defaults wait up to
 * 30 s for a connection and, after repeated failures, up to 20 s before trying again (and a
 * query waits silently meanwhile), so a worker came back 8-23 s after a 5 s outage. Here a
 * connection attempt fails after a few seconds and failed ones are retried within a second.
 */
export const RECONNECT = {
  /** Seconds a connection attempt (TCP, TLS, startup) may take. */
  connect_timeout: 3,
  /** Seconds an idle connection waits before TCP keep-alive probes find a dead peer. */
  keep_alive: 10,
  /**
   * Seconds before the next attempt after `retries` failed ones: 0.1 s doubling to a cap of
   * 1 s, jittered down to half so that many workers do not reconnect in lockstep.
   */
  backoff: (retries: number): number =>
    (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 1),
} as const;

/**
 * Opens a pool. `prepare: false` keeps it usable through transaction poolers
 * (Supabase's Supavisor, pgbouncer); notices are dropped because the SQL core
 * reports through return values and errors, not NOTICEs.
 */
export function connect(url: string, options: ConnectOptions = {}): Sql {
  const sql: Sql = postgres(url, {
    ...RECONNECT,
    prepare: false,
    max: options.max ?? 4,
    onnotice: () => {},
    // A connection closed: the next one need not fetch the array types again.
    onclose: () => keepArrayTypes(sql),
    connection: { application_name: options.applicationName ?? "edgeflow" },
    types: {
      // int8 (message ids, counts) as JS numbers: they stay far below 2^53.
      bigint: {
        to: 20,
        from: [20],
        serialize: (value: number) => String(value),
        parse: (value: string) => Number(value),
      },
    },
  });
  return sql;
}

/**
 * Stops the pool from fetching the array types again on each new connection, once one
 * connection has fetched them (they are kept in the pool's options, shared by its
 * connections). postgres.js runs that fetch in a promise nobody handles: when the database
 * drops the connection at that moment (a restart), the rejection is unhandled, which ends a
 * Deno process (porsager/postgres#1192, #1223). Types created after the first fetch are not
 * seen by connections opened later, as they are not by those already open.
 */
export function keepArrayTypes(sql: Sql): void {
  const options = sql.options as unknown as {
    fetch_types: boolean;
    shared?: { typeArrayMap?: Record<string, unknown> };
  };
  if (Object.keys(options.shared?.typeArrayMap ?? {}).length > 0) options.fetch_types = false;
}

/**
 * A pool of its own with the settings of `sql` (a pool from `connect` or one a user passed),
 * for work that holds a connection for a long time (long polls). Unlike `sql.reserve()`, it
 * reconnects after the database went away: a reserved connection does not, and postgres.js
 * then throws from a timer when it is used again.
 */
export function companionPool(sql: Sql, max = 1): Sql {
  const options = sql.options as unknown as Record<string, unknown>;
  // postgres.js takes its parsed options back as they are (this is how its own LISTEN
  // connection is made); `shared` keeps the retry count and type caches common.
  return postgres({ ...options, max, idle_timeout: null, max_lifetime: null } as never);
}
