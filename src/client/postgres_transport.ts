/**
 * The client over a postgres.js pool: the two client functions as SQL, a run's events by LISTEN
 * on channel `pgflow:run:<run_id>` (postgres.js keeps one extra connection for all LISTENs and
 * re-LISTENs after a reconnect). Works wherever postgres.js does: Deno, Node, Bun.
 */
import type { Sql } from "../db/connect.ts";
import { getRunWithStates, startFlowWithStates } from "../db/runs.ts";
import type { ClientTransport, RunEvent } from "./types.ts";

/** A postgres.js pool (`postgres(url)`); the client leaves it open. */
export type PostgresLike = Sql;

export function postgresTransport(sql: PostgresLike): ClientTransport {
  return {
    startFlowWithStates: (flowSlug, input, runId) =>
      startFlowWithStates(sql, { flowSlug, input, runId }),
    getRunWithStates: (runId) => getRunWithStates(sql, runId),
    async subscribe(runId, onEvent) {
      const { unlisten } = await sql.listen(`pgflow:run:${runId}`, (payload) => {
        let event: RunEvent;
        try {
          event = JSON.parse(payload);
        } catch {
          return; // not one of the core's notifications
        }
        onEvent(event);
      });
      return async () => {
        await unlisten();
      };
    },
  };
}
