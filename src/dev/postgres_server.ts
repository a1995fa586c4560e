/**
 * Runs a PostgreSQL cluster from a folder of binaries (the embedded npm build
 * or a Debian postgresql-NN) with initdb and pg_ctl: for the test runner, the
 * demo, the dev database, the benchmark and fault tests that stop and start it.
 *
 * PostgreSQL refuses to run as root, so under root every server tool runs as
 * OS user `postgres` (created when missing). That user must reach the binaries
 * and the data folder; `server_files.ts` arranges that for clones inside
 * root-only folders.
 */
import { dirname } from "node:path";
import { PostgresSetupError } from "./postgres_setup_error.ts";

export interface PostgresServer {
  /** Connection string of the `postgres` superuser on database `postgres`. */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server; the data folder is deleted unless the cluster is persistent. */
  stop(): Promise<void>;
  /**
   * Stops the server at once (pg_ctl's immediate mode) and deletes the data folder unless the
   * cluster is persistent, synchronously: for an `unload` handler, which cannot wait for a promise.
   */
  stopNow(): void;
  /** Stops the server and keeps its data (`mode` as pg_ctl's: fast or immediate). */
  halt(mode?: "fast" | "immediate"): Promise<void>;
  /** Starts a halted server again on the same port and data. */
  resume(): Promise<void>;
}

export interface PostgresOptions {
  /** Folder with initdb, pg_ctl and postgres. */
  bin: string;
  /** Data folder; created by initdb when it holds no cluster yet. */
  dataDir: string;
  /** TCP port on 127.0.0.1; a free one when omitted. */
  port?: number;
  /** Keep the data folder after stop (dev database) or delete it (tests). */
  persistent?: boolean;
  /**
   * Keep PostgreSQL's durability (fsync, synchronous_commit). Tests and the dev
   * database turn it off for speed; benchmarks keep it so numbers mean what they do in production.
   */
  durable?: boolean;
  /** Extra server settings (`-c name=value`). */
  settings?: Record<string, string>;
}

export const SUPERUSER_PASSWORD = "postgres";

// Durability is not what a dev/test server is for; speed is.
const FAST_UNSAFE_SETTINGS = { fsync: "off", synchronous_commit: "off", full_page_writes: "off" };

export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const asRoot = () => Deno.uid() === 0;

function serverToolCommand(command: string, args: string[]): Deno.Command {
  return new Deno.Command(asRoot() ? "runuser" : command, {
    args: asRoot() ? ["-u", "postgres", "--", command, ...args] : args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C", LANG: "C" },
  });
}

/** Runs a server tool, as OS user postgres under root; throws with its output on failure. */
export async function runServerTool(command: string, args: string[]): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await serverToolCommand(command, args).output();
  } catch (error) {
    throw new PostgresSetupError(
      `Could not run ${command}: ${error instanceof Error ? error.message : error}.`,
    );
  }
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`${command} ${args.join(" ")} failed:\n${text}`);
  return text;
}

/** Under root, the OS user the server runs as; created on a fresh machine. */
export async function ensurePostgresUser(): Promise<void> {
  if (!asRoot()) return;
  const known = await new Deno.Command("id", {
    args: ["-u", "postgres"],
    stdout: "null",
    stderr: "null",
  })
    .output();
  if (known.success) return;
  const created = await new Deno.Command("useradd", {
    args: ["--system", "--user-group", "--no-create-home", "postgres"],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!created.success) {
    throw new PostgresSetupError(
      "PostgreSQL cannot run as root, and the OS user `postgres` it would run as is missing and " +
        `could not be created (useradd: ${new TextDecoder().decode(created.stderr).trim()}). ` +
        "Create it (`useradd --system --user-group postgres`), run as an ordinary user, or set " +
        "DATABASE_URL to a server of your own.",
    );
  }
}

async function hasCluster(dataDir: string): Promise<boolean> {
  try {
    await Deno.stat(`${dataDir}/PG_VERSION`);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Creates the cluster when needed and starts the server; resolves when it accepts connections. */
export async function startPostgres(options: PostgresOptions): Promise<PostgresServer> {
  await ensurePostgresUser();
  const { bin, dataDir } = options;
  const port = options.port ?? freePort();
  // pg_ctl's log and the server's socket live beside the data folder, in a folder the server owns.
  const runDir = `${dataDir}.run`;
  await Deno.mkdir(runDir, { recursive: true });
  await Deno.chmod(runDir, 0o777);
  if (!(await hasCluster(dataDir))) await initialise(bin, dataDir, runDir);

  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: runDir,
    max_connections: "300",
    ...(options.durable ? {} : FAST_UNSAFE_SETTINGS),
    ...options.settings,
  };
  const serverArgs = [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)]
    .join(" ");
  const start = async () => {
    try {
      await runServerTool(`${bin}/pg_ctl`, [
        "-D",
        dataDir,
        "-l",
        `${runDir}/server.log`,
        "-w",
        "-t",
        "60",
        "-o",
        serverArgs,
        "start",
      ]);
    } catch (error) {
      const log = await Deno.readTextFile(`${runDir}/server.log`).catch(() => "");
      throw new Error(`${(error as Error).message}\nserver log:\n${log.slice(-2000)}`);
    }
  };
  const halt = async (mode: "fast" | "immediate" = "fast") => {
    await runServerTool(`${bin}/pg_ctl`, ["-D", dataDir, "-m", mode, "-w", "stop"]);
  };
  await start();
  return {
    url: `postgres://postgres:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    halt,
    resume: start,
    async stop() {
      await halt("fast").catch(() => {});
      if (!options.persistent) {
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
        await Deno.remove(runDir, { recursive: true }).catch(() => {});
      }
    },
    stopNow() {
      try {
        serverToolCommand(`${bin}/pg_ctl`, ["-D", dataDir, "-m", "immediate", "-w", "stop"])
          .outputSync();
      } catch {
        // Not running, or pg_ctl is gone: nothing left to stop.
      }
      if (!options.persistent) {
        for (const folder of [dataDir, runDir]) {
          try {
            Deno.removeSync(folder, { recursive: true });
          } catch {
            // Already gone.
          }
        }
      }
    },
  };
}

/**
 * The server, whose stop also deletes the folder its data folder is in: for a throwaway server
 * in a temporary folder of its own (server_files.ts, throwawayDataDir).
 */
export function withFolderDeletedOnStop(server: PostgresServer): PostgresServer {
  const folder = dirname(server.dataDir);
  const removeFolder = () => {
    try {
      Deno.removeSync(folder, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  return {
    ...server,
    async stop() {
      await server.stop();
      removeFolder();
    },
    stopNow() {
      server.stopNow();
      removeFolder();
    },
  };
}

async function initialise(bin: string, dataDir: string, runDir: string): Promise<void> {
  await Deno.mkdir(dataDir, { recursive: true });
  if (asRoot()) await chownToPostgres(dataDir);
  await Deno.chmod(dataDir, 0o700);
  const passwordFile = `${runDir}/pwfile`;
  await Deno.writeTextFile(passwordFile, `${SUPERUSER_PASSWORD}\n`, { mode: 0o644 });
  try {
    await runServerTool(`${bin}/initdb`, [
      "-D",
      dataDir,
      "-U",
      "postgres",
      `--pwfile=${passwordFile}`,
      "--auth-host=scram-sha-256",
      "--auth-local=trust",
      "--encoding=UTF8",
      "--locale=C",
      "--no-sync",
    ]);
  } finally {
    await Deno.remove(passwordFile).catch(() => {});
  }
}

async function chownToPostgres(path: string): Promise<void> {
  const output = await new Deno.Command("chown", {
    args: ["postgres:postgres", path],
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`chown postgres ${path}: ${new TextDecoder().decode(output.stderr)}`);
  }
}
