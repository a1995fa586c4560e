/**
 * A throwaway pgbouncer (Debian's package) in transaction mode in front of a PostgreSQL server:
 * the kind of pooler through which LISTEN is accepted but notifications never arrive.
 */
import { freePort } from "../../src/dev/postgres_server.ts";
import { eventually } from "./eventually.ts";

export interface Pgbouncer {
  /** `url` with host and port replaced by the pooler's. */
  urlFor(url: string): string;
  stop(): Promise<void>;
}

/** The pgbouncer binary, or undefined when it is not installed. */
export function findPgbouncer(): string | undefined {
  for (const path of ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** Starts pgbouncer for the server of `serverUrl` (its user and password log every client in). */
export async function startPgbouncer(binary: string, serverUrl: string): Promise<Pgbouncer> {
  const server = new URL(serverUrl);
  const dir = await Deno.makeTempDir({ prefix: "edgeflow-pgbouncer-" });
  await Deno.chmod(dir, 0o777);
  const port = freePort();
  const target = [
    `host=${server.hostname}`,
    `port=${server.port || 5432}`,
    `user=${decodeURIComponent(server.username)}`,
    server.password ? `password=${decodeURIComponent(server.password)}` : "",
  ].filter(Boolean).join(" ");
  await Deno.writeTextFile(
    `${dir}/pgbouncer.ini`,
    [
      "[databases]",
      `* = ${target}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      // Any client user name is accepted; every server connection logs in as the user above.
      "auth_type = any",
      "pool_mode = transaction",
      "default_pool_size = 10",
      "max_client_conn = 200",
      `logfile = ${dir}/pgbouncer.log`,
      "",
    ].join("\n"),
  );
  // pgbouncer refuses to run as root.
  const asRoot = Deno.uid() === 0;
  const child = new Deno.Command(asRoot ? "runuser" : binary, {
    args: asRoot
      ? ["-u", "postgres", "--", binary, `${dir}/pgbouncer.ini`]
      : [`${dir}/pgbouncer.ini`],
    // It logs to its logfile (read when it fails to start).
    stdout: "null",
    stderr: "null",
  }).spawn();
  const exited = child.status.then((status) => status);
  let failed: Deno.CommandStatus | undefined;
  exited.then((status) => failed = status);
  await eventually("pgbouncer to accept connections", async () => {
    if (failed) {
      const log = await Deno.readTextFile(`${dir}/pgbouncer.log`).catch(() => "");
      throw new Error(`pgbouncer exited with code ${failed.code}:\n${log}`);
    }
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      return false;
    }
  });
  return {
    urlFor(url) {
      const through = new URL(url);
      through.hostname = "127.0.0.1";
      through.port = String(port);
      return through.toString();
    },
    async stop() {
      if (!failed) child.kill("SIGTERM");
      await exited;
      await Deno.remove(dir, { recursive: true });
    },
  };
}
