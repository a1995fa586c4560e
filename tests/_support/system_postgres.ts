/**
 * Starts a throwaway cluster of a system-installed PostgreSQL (Debian's
 * postgresql-NN package), to check the core on other major versions.
 */
import { freePort } from "../../src/dev/embedded_postgres.ts";

export interface SystemServer {
  url: string;
  stop(): Promise<void>;
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
  await run(`${bin}/pg_ctl`, [
    "-D",
    data,
    "-l",
    `${dir}/log`,
    "-w",
    "-o",
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off` +
    (options.pgCron ? " -c shared_preload_libraries=pg_cron -c cron.database_name=postgres" : ""),
    "start",
  ]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await run(`${bin}/pg_ctl`, ["-D", data, "-m", "immediate", "stop"]);
      await Deno.remove(dir, { recursive: true });
    },
  };
}
