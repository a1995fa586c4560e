/**
 * A fault scenario's own PostgreSQL 17 (embedded build): durable (fsync and synchronous commit
 * on), because an immediate stop with synchronous_commit off may lose commits the worker was
 * told about, a loss that would be the test server's, not the engine's. pgmq, the core and the
 * suite's executions table are installed in database `postgres`.
 */
import { connect, type Sql } from "../../src/db/connect.ts";
import { applyMigrations, readMigrations } from "../../src/db/migrate.ts";
import { startThrowawayPostgres } from "../../src/dev/embedded_postgres.ts";
import type { PostgresServer } from "../../src/dev/postgres_server.ts";
import { installPgmq } from "../../src/dev/pgmq.ts";
import { createExecutionsTable } from "./flow.ts";

export interface ScenarioDatabase {
  server: PostgresServer;
  /** The harness's own pool (reconnects by itself after a restart). */
  sql: Sql;
  stop(): Promise<void>;
}

export async function startScenarioDatabase(): Promise<ScenarioDatabase> {
  const server = await startThrowawayPostgres("faults", { durable: true });
  const sql = connect(server.url, { max: 2, applicationName: "edgeflow fault suite" });
  try {
    await installPgmq(sql);
    await applyMigrations(sql, await readMigrations());
    await createExecutionsTable(sql);
  } catch (error) {
    await sql.end({ timeout: 1 });
    await server.stop();
    throw error;
  }
  return {
    server,
    sql,
    async stop() {
      await sql.end({ timeout: 1 }).catch(() => {});
      await server.stop();
    },
  };
}
