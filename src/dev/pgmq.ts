/**
 * Makes pgmq available for dev and tests: the real extension when the server
 * has it (as Supabase does), otherwise edgeflow's pgmq-compatible SQL. The
 * compatible SQL is never part of supabase/migrations.
 */
import type { Sql } from "../db/connect.ts";
import { readText } from "../db/read_text.ts";

export const PGMQ_COMPAT_SQL = new URL("./pgmq_compat.sql", import.meta.url);

export type PgmqSource = "present" | "extension" | "compat";

export async function installPgmq(sql: Sql): Promise<PgmqSource> {
  const [present] = await sql`select 1 from pg_namespace where nspname = 'pgmq'`;
  if (present) return "present";
  const [available] = await sql`select 1 from pg_available_extensions where name = 'pgmq'`;
  if (available) {
    await sql`create extension pgmq`;
    return "extension";
  }
  await sql.unsafe(await readText(PGMQ_COMPAT_SQL));
  return "compat";
}
