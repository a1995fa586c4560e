/**
 * A PostgreSQL 17 server from the embedded npm build: for the tests, the demo,
 * the dev database and the benchmark when no DATABASE_URL is given. With
 * `../shared/pgmq` beside the clone, the server has the real pgmq extension.
 */
import {
  type PostgresOptions,
  type PostgresServer,
  startPostgres,
  withFolderDeletedOnStop,
} from "./postgres_server.ts";
import { embeddedNativeDir, throwawayDataDir } from "./server_files.ts";

export type EmbeddedServer = PostgresServer;

export type EmbeddedOptions = Omit<PostgresOptions, "bin">;

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const native = await embeddedNativeDir();
  return await startPostgres({ ...options, bin: `${native}/bin` });
}

/** A server in a fresh temporary folder, deleted (the folder too) on stop. */
export async function startThrowawayPostgres(
  purpose: string,
  options: { durable?: boolean; settings?: Record<string, string> } = {},
): Promise<EmbeddedServer> {
  const dataDir = await throwawayDataDir(purpose);
  return withFolderDeletedOnStop(
    await startEmbeddedPostgres({ ...options, dataDir, persistent: false }),
  );
}
