/**
 * `deno task migrate`: applies the core migrations to DATABASE_URL (or to the
 * embedded dev database when it is unset) and exits. A real database must
 * have pgmq already (Supabase does); the dev database gets the compatible SQL.
 */
import { openDevDatabase } from "./dev_database.ts";

const external = Boolean(Deno.env.get("DATABASE_URL"));
try {
  const db = await openDevDatabase({ devPgmq: !external });
  const where = external ? "DATABASE_URL" : db.url;
  console.log(
    db.applied.length
      ? `applied ${db.applied.length} migration(s) to ${where}: ${db.applied.join(", ")}`
      : `${where} is up to date`,
  );
  await db.stop();
} catch (error) {
  console.error(`migrate failed: ${error instanceof Error ? error.message : String(error)}`);
  Deno.exit(1);
}
