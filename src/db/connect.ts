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
 * Opens a pool. `prepare: false` keeps it usable through transaction poolers
 * (Supabase's Supavisor, pgbouncer); notices are dropped because the SQL core
 * reports through return values and errors, not NOTICEs.
 */
export function connect(url: string, options: ConnectOptions = {}): Sql {
  return postgres(url, {
    prepare: false,
    max: options.max ?? 4,
    onnotice: () => {},
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
}
