/**
 * The development database: DATABASE_URL when set, else an embedded
 * PostgreSQL 17 kept in .edgeflow/pg (gitignored) on a fixed port, with pgmq
 * and the core migrations installed.
 */
import { connect } from "../db/connect.ts";
import { applyMigrations, readMigrations } from "../db/migrate.ts";
import { type EmbeddedServer, startEmbeddedPostgres } from "./embedded_postgres.ts";
import { installPgmq, type PgmqSource } from "./pgmq.ts";

export const DEV_PORT = 54329;
export const DEV_URL = `postgres://postgres:postgres@127.0.0.1:${DEV_PORT}/postgres`;
const DEV_DATA_DIR = new URL("../../.edgeflow/pg/", import.meta.url).pathname;

export interface DevDatabase {
  url: string;
  /** Stops the embedded server; a no-op for DATABASE_URL. */
  stop(): Promise<void>;
  /** Where pgmq came from. */
  pgmq: PgmqSource;
  /** Versions of migrations applied by this call (empty when up to date). */
  applied: string[];
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
    const parent = new URL("../../.edgeflow/", import.meta.url).pathname;
    await Deno.mkdir(parent, { recursive: true });
    // Under root the server runs as OS user postgres, which must be able to write here.
    await Deno.chmod(parent, 0o777);
    server = await startEmbeddedPostgres({
      dataDir: DEV_DATA_DIR,
      port: DEV_PORT,
      persistent: true,
    });
  }
  const url = given ?? server!.url;
  const sql = connect(url, { max: 1 });
  try {
    const pgmq = await installPgmq(sql);
    const applied = await applyMigrations(sql, await readMigrations());
    return { url, pgmq, applied, stop: async () => await server?.stop() };
  } catch (error) {
    await server?.stop();
    throw error;
  } finally {
    await sql.end();
  }
}
