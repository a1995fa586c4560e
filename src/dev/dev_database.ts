/**
 * The development database: DATABASE_URL when set, else an embedded
 * PostgreSQL 17 kept in .edgeflow/pg (gitignored) on a fixed port, with pgmq
 * and the core migrations installed.
 */
import { connect } from "../db/connect.ts";
import { applyMigrations, readMigrations } from "../db/migrate.ts";
import { type EmbeddedServer, startEmbeddedPostgres } from "./embedded_postgres.ts";
import { installPgmq, type PgmqSource } from "./pgmq.ts";
import { devDataDir } from "./server_files.ts";

import { DEV_PORT } from "./dev_url.ts";

export { DEV_URL } from "./dev_url.ts";
const CLONE_DIR = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

export interface DevDatabase {
  url: string;
  /** Stops the embedded server; a no-op for DATABASE_URL. */
  stop(): Promise<void>;
  /** Where pgmq came from. */
  pgmq: PgmqSource;
  /** Versions of migrations applied by this call (empty when up to date). */
  applied: string[];
  /** The embedded server's data folder (undefined for DATABASE_URL). */
  dataDir?: string;
}

/**
 * Opens the dev database and brings the core up to date. pgmq comes from the
 * server when it has it; otherwise edgeflow's pgmq-compatible SQL is installed
 * (this is a development database; `edgeflow migrate --db-url` never does that).
 */
export async function openDevDatabase(): Promise<DevDatabase> {
  const given = Deno.env.get("DATABASE_URL");
  let server: EmbeddedServer | undefined;
  if (!given) {
    server = await startEmbeddedPostgres({
      dataDir: await devDataDir(CLONE_DIR),
      port: DEV_PORT,
      persistent: true,
    });
  }
  const url = given ?? server!.url;
  const sql = connect(url, { max: 1 });
  try {
    const pgmq = await installPgmq(sql);
    const applied = await applyMigrations(sql, await readMigrations());
    return {
      url,
      pgmq,
      applied,
      dataDir: server?.dataDir,
      stop: async () => await server?.stop(),
    };
  } catch (error) {
    await server?.stop();
    throw error;
  } finally {
    await sql.end();
  }
}
