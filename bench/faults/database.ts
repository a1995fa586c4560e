/**
 * A fault scenario's own PostgreSQL 17 (embedded build): durable (fsync and synchronous commit
 * on), because an immediate stop with synchronous_commit off may lose commits the worker was
 * told about, a loss that would be the test server's, not the engine's. pgmq, the core and the
 * suite's tables are in database `postgres`.
 *
 * initdb and the migrations take seconds on a busy machine, so they run once per process into a
 * template cluster; each scenario starts its server on a copy of it.
 */
import { connect, type Sql } from "../../src/db/connect.ts";
import { applyMigrations, readMigrations } from "../../src/db/migrate.ts";
import { startEmbeddedPostgres } from "../../src/dev/embedded_postgres.ts";
import { type PostgresServer, withFolderDeletedOnStop } from "../../src/dev/postgres_server.ts";
import { installPgmq } from "../../src/dev/pgmq.ts";
import { throwawayDataDir } from "../../src/dev/server_files.ts";
import { createExecutionsTable } from "./flow.ts";

export interface ScenarioDatabase {
  server: PostgresServer;
  /** The harness's own pool (reconnects by itself after a restart). */
  sql: Sql;
  stop(): Promise<void>;
}

let templatePromise: Promise<string> | undefined;

export async function startScenarioDatabase(): Promise<ScenarioDatabase> {
  templatePromise ??= buildTemplate();
  const template = await templatePromise;
  const dataDir = await throwawayDataDir("faults");
  await copyCluster(template, dataDir);
  const server = withFolderDeletedOnStop(
    await startEmbeddedPostgres({
      dataDir,
      durable: true,
      persistent: false,
      // Crash recovery (after an immediate stop) first fsyncs the data folder: one syncfs() call
      // instead of one fsync per file keeps that from dominating the outage.
      settings: { recovery_init_sync_method: "syncfs" },
    }),
  );
  const sql = connect(server.url, { max: 2, applicationName: "edgeflow fault suite" });
  return {
    server,
    sql,
    async stop() {
      await sql.end({ timeout: 1 }).catch(() => {});
      // Its data is thrown away: no shutdown checkpoint needed.
      await server.halt("immediate").catch(() => {});
      await server.stop();
    },
  };
}

/** A stopped cluster with pgmq, the core and the suite's tables; deleted when the process ends. */
async function buildTemplate(): Promise<string> {
  const dataDir = await throwawayDataDir("faults-template");
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dataDir.replace(/\/data$/, ""), { recursive: true });
    } catch {
      // already gone
    }
  });
  const server = await startEmbeddedPostgres({ dataDir, persistent: true });
  const sql = connect(server.url, { max: 1 });
  try {
    await installPgmq(sql);
    await applyMigrations(sql, await readMigrations());
    await createExecutionsTable(sql);
  } finally {
    await sql.end({ timeout: 1 });
    await server.halt("fast");
  }
  return dataDir;
}

/** `cp -a`: the copy keeps the server user as its owner and the folder's 0700 mode. */
async function copyCluster(from: string, to: string): Promise<void> {
  const copy = await new Deno.Command("cp", { args: ["-a", from, to], stderr: "piped" }).output();
  if (!copy.success) {
    throw new Error(
      `copying the template cluster failed: ${new TextDecoder().decode(copy.stderr)}`,
    );
  }
}
