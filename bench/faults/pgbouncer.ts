/**
 * A throwaway pgbouncer in transaction pool mode in front of a test server: Debian's `pgbouncer`
 * binary, an ini and a userlist generated in a temp folder, a free port. pgbouncer refuses to
 * run as root, so under root it runs as OS user postgres, like the server tools.
 */
import { freePort, SUPERUSER_PASSWORD } from "../../src/dev/postgres_server.ts";

export interface Pgbouncer {
  /** The superuser's URL for `database` through the pooler. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export const PGBOUNCER_BIN = "/usr/sbin/pgbouncer";

/** Why pgbouncer cannot run here, or undefined when it can. */
export function pgbouncerMissing(): string | undefined {
  try {
    Deno.statSync(PGBOUNCER_BIN);
    return undefined;
  } catch {
    return `${PGBOUNCER_BIN} is not installed (Debian package pgbouncer: apt-get install pgbouncer)`;
  }
}

export async function startPgbouncer(
  server: { port: number },
  database: string,
): Promise<Pgbouncer> {
  const missing = pgbouncerMissing();
  if (missing) throw new Error(missing);
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "edgeflow-pgbouncer-" });
  await Deno.chmod(dir, 0o777);
  const port = freePort();
  const ini = `${dir}/pgbouncer.ini`;
  await Deno.writeTextFile(
    `${dir}/userlist.txt`,
    `"postgres" "${SUPERUSER_PASSWORD}"\n`,
    { mode: 0o644 },
  );
  await Deno.writeTextFile(
    ini,
    [
      "[databases]",
      `${database} = host=127.0.0.1 port=${server.port} dbname=${database}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "pool_mode = transaction",
      "auth_type = scram-sha-256",
      `auth_file = ${dir}/userlist.txt`,
      "default_pool_size = 20",
      "max_client_conn = 200",
      // postgres.js sends these at startup; pgbouncer refuses unknown ones unless told to ignore.
      "ignore_startup_parameters = extra_float_digits,options",
      `logfile = ${dir}/pgbouncer.log`,
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  const asRoot = Deno.uid() === 0;
  const child = new Deno.Command(asRoot ? "runuser" : PGBOUNCER_BIN, {
    args: asRoot ? ["-u", "postgres", "--", PGBOUNCER_BIN, ini] : [ini],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const url = `postgres://postgres:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/${database}`;
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 50)),
      ]);
      if (exited || Date.now() > deadline) {
        const log = await Deno.readTextFile(`${dir}/pgbouncer.log`).catch(() => "");
        throw new Error(`pgbouncer did not start:\n${await stderr}\n${log.slice(-2000)}`);
      }
    }
  }
  return {
    url,
    port,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await stderr;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
