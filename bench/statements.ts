/**
 * Where the server's time goes: pg_stat_statements of the current database (the bench server
 * preloads it and tracks nested statements too, so a function's inner statements show up).
 */
import type { Sql } from "../src/db/connect.ts";

export interface StatementStat {
  query: string;
  toplevel: boolean;
  calls: number;
  totalMs: number;
  meanMs: number;
}

/** Forgets this database's statistics (creating the extension's view when missing). */
export async function resetStatementStats(sql: Sql): Promise<void> {
  await sql`create extension if not exists pg_stat_statements`;
  await sql`select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)`;
}

/** This database's statements by total server time, most first. */
export async function statementStats(sql: Sql, limit = 40): Promise<StatementStat[]> {
  await sql`create extension if not exists pg_stat_statements`;
  const rows = await sql<
    { query: string; toplevel: boolean; calls: string; total: number; mean: number }[]
  >`
    select regexp_replace(query, '\\s+', ' ', 'g') as query, toplevel, calls,
           total_exec_time as total, mean_exec_time as mean
    from pg_stat_statements
    where dbid = (select oid from pg_database where datname = current_database())
      and query not ilike '%pg_stat_statements%'
    order by total_exec_time desc
    limit ${limit}`;
  return rows.map((row) => ({
    query: row.query.length > 160 ? row.query.slice(0, 157) + "..." : row.query,
    toplevel: row.toplevel,
    calls: Number(row.calls),
    totalMs: Number(row.total),
    meanMs: Number(row.mean),
  }));
}
