/** Races between sessions: the second party of a race blocks on a lock the first holds. */
import type { Sql } from "../../src/db/connect.ts";
import { eventually } from "./eventually.ts";

/** Waits until some session of this database waits for a lock. */
export async function someoneWaitsForALock(sql: Sql): Promise<void> {
  await eventually("a session waiting for a lock", async () => {
    const [row] = await sql`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'`;
    return row.n > 0;
  });
}
