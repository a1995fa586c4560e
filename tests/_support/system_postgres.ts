/**
 * Starts a throwaway cluster of a system-installed PostgreSQL (Debian's
 * postgresql-NN package), to check the core on other major versions, or of the
 * embedded PostgreSQL 17's own binaries (a server a test may stop and start
 * again, e.g. to simulate an outage). The real pgmq from ../shared is installed
 * into its extension folder when this process may write there (root on CI).
 */
import {
  type PostgresServer,
  startPostgres,
  withFolderDeletedOnStop,
} from "../../src/dev/postgres_server.ts";
import {
  embeddedNativeDir,
  hasSharedPgmq,
  installPgmqFiles,
  throwawayDataDir,
} from "../../src/dev/server_files.ts";

export interface SystemServer extends PostgresServer {
  /** A fast stop, then a start on the same port and data; resolves once it takes connections. */
  restart(): Promise<void>;
}

/** The bin folder of the embedded PostgreSQL 17 (it has pg_ctl too), with the real pgmq. */
export async function embeddedPostgresBin(): Promise<string> {
  return `${await embeddedNativeDir()}/bin`;
}

export function systemPostgresBin(major: number): string | undefined {
  const bin = `/usr/lib/postgresql/${major}/bin`;
  try {
    Deno.statSync(`${bin}/postgres`);
    return bin;
  } catch {
    return undefined;
  }
}

/** Whether the system server at `bin` has the pg_cron library (Debian's postgresql-NN-cron). */
export function hasPgCron(bin: string): boolean {
  const lib = bin.replace(/\/bin$/, "/lib/pg_cron.so");
  try {
    return Deno.statSync(lib).isFile;
  } catch {
    return false;
  }
}

/** Installs the real pgmq into a Debian server's extension folder; false when it cannot. */
export async function installSystemPgmq(bin: string): Promise<boolean> {
  if (!hasSharedPgmq()) return false;
  const major = bin.match(/postgresql\/(\d+)\//)?.[1];
  try {
    await installPgmqFiles(`/usr/share/postgresql/${major}/extension`);
    return true;
  } catch {
    return false;
  }
}

export async function startSystemPostgres(
  bin: string,
  options: { pgCron?: boolean } = {},
): Promise<SystemServer> {
  await installSystemPgmq(bin);
  const server = withFolderDeletedOnStop(
    await startPostgres({
      bin,
      dataDir: await throwawayDataDir("syspg"),
      settings: options.pgCron
        ? { shared_preload_libraries: "pg_cron", "cron.database_name": "postgres" }
        : {},
    }),
  );
  return {
    ...server,
    async restart() {
      await server.halt("fast");
      await server.resume();
    },
  };
}
