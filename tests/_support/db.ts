/**
 * Test databases: one server per test run, one fresh database per test.
 *
 * The server is `EDGEFLOW_TEST_DATABASE_URL` (set by `deno task test`), else
 * `DATABASE_URL`, else an embedded PostgreSQL started for this process. A
 * template database with pgmq and the core migrations is built once per content
 * hash; each test database is a cheap `CREATE DATABASE ... TEMPLATE` copy.
 */
import { connect, type Sql } from "../../src/db/connect.ts";
import { applyMigrations, readMigrations } from "../../src/db/migrate.ts";
import { installPgmq, PGMQ_COMPAT_SQL } from "../../src/dev/pgmq.ts";
import { startThrowawayPostgres } from "../../src/dev/embedded_postgres.ts";
import { eventually } from "./eventually.ts";

export interface TestDb {
  /** A pool connected to this test's own database. */
  sql: Sql;
  /** Connection string of this test's database. */
  url: string;
  name: string;
  /** Opens another pool to the same database (e.g. a second worker). */
  connect(max?: number): Sql;
}

/**
 * Resolved when this module loads, outside any test: an embedded server lives as long as the
 * process, and the sanitizers would count it against whichever test happened to start it.
 */
const resolvedAdminUrl = await resolveAdminUrl();

/** The server's superuser URL (database `postgres`). */
export function adminUrl(): Promise<string> {
  return Promise.resolve(resolvedAdminUrl);
}

async function resolveAdminUrl(): Promise<string> {
  const given = Deno.env.get("EDGEFLOW_TEST_DATABASE_URL") ?? Deno.env.get("DATABASE_URL");
  if (given) return given;
  const server = await startThrowawayPostgres("test");
  // Synchronously: the process ends right after this event, so a promise would never settle
  // and the server would outlive the test process.
  globalThis.addEventListener("unload", () => server.stopNow());
  return server.url;
}

/** URL of `database` on the same server as `url`. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

let templatePromise: Promise<string> | undefined;

/** Name of the template database holding pgmq and the current core migrations. */
export function templateName(): Promise<string> {
  templatePromise ??= buildTemplate();
  return templatePromise;
}

async function contentHash(): Promise<string> {
  const parts = [
    await Deno.readTextFile(PGMQ_COMPAT_SQL),
    Deno.env.get("EDGEFLOW_REQUIRE_REAL_PGMQ") ?? "",
  ];
  for (const migration of await readMigrations()) parts.push(migration.version, migration.sql);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\0")));
  return Array.from(new Uint8Array(digest).slice(0, 6), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

async function buildTemplate(): Promise<string> {
  const name = `edgeflow_tpl_${await contentHash()}`;
  const admin = connect(await adminUrl(), { max: 1 });
  try {
    // Test files may run in parallel processes: one builds, the others wait.
    // CREATE DATABASE cannot run in a transaction, so this is a session lock.
    await admin`select pg_advisory_lock(hashtext('edgeflow.test-template'))`;
    const [exists] = await admin`select 1 from pg_database where datname = ${name}`;
    if (!exists) {
      await admin.unsafe(`drop database if exists ${name}_build`);
      await admin.unsafe(`create database ${name}_build template template0`);
      const build = connect(withDatabase(await adminUrl(), `${name}_build`), { max: 1 });
      try {
        const source = await installPgmq(build);
        if (source === "compat" && Deno.env.get("EDGEFLOW_REQUIRE_REAL_PGMQ")) {
          throw new Error(
            "EDGEFLOW_REQUIRE_REAL_PGMQ is set, but the test server has no pgmq extension: " +
              "install pgmq 1.5.1 into it (../shared/pgmq/README.md) or unset the variable",
          );
        }
        await applyMigrations(build, await readMigrations());
      } finally {
        await build.end();
      }
      // Renaming last means a template that exists is always complete.
      await admin.unsafe(`alter database ${name}_build rename to ${name}`);
    }
    await admin`select pg_advisory_unlock(hashtext('edgeflow.test-template'))`;
  } finally {
    await admin.end();
  }
  return name;
}

let counter = 0;

/** Creates a database for one test; `template: "empty"` gives one without pgmq or the core. */
export async function createTestDb(
  options: { template?: "core" | "empty" } = {},
): Promise<TestDb & { drop(): Promise<void> }> {
  const template = options.template === "empty" ? "template0" : await templateName();
  // Random, not the time: test modules run in parallel workers of one process (one pid, a
  // counter each), and two of them once created the same name in the same millisecond.
  const name = `edgeflow_test_${Deno.pid}_${++counter}_${crypto.randomUUID().slice(0, 8)}`;
  const server = await adminUrl();
  const admin = connect(server, { max: 1 });
  try {
    await admin.unsafe(`create database ${name} template ${template}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(server, name);
  const pools: Sql[] = [];
  const open = (max = 4) => {
    const pool = connect(url, { max, applicationName: "edgeflow test pool" });
    pools.push(pool);
    return pool;
  };
  return {
    sql: open(),
    url,
    name,
    connect: open,
    async drop() {
      await Promise.all(pools.map((pool) => pool.end({ timeout: 1 })));
      const admin = connect(server, { max: 1 });
      try {
        const left = await connectionsLeftOpen(admin, name);
        if (left.length > 0) {
          throw new Error(
            `the test left ${left.length} connection(s) open to its database ` +
              `(${left.join("; ")}): end every pool and stop every worker it starts`,
          );
        }
      } finally {
        // `with (force)` would also close what was left open, so the check above runs first.
        await admin.unsafe(`drop database if exists ${name} with (force)`).finally(() =>
          admin.end()
        );
      }
    },
  };
}

/**
 * The server-side check for pools a test did not end: the sanitizers cannot see them once
 * `drop database ... with (force)` has closed their sockets. A backend may take a moment to
 * exit after its client said goodbye, so this waits a little before naming what is left.
 */
async function connectionsLeftOpen(admin: Sql, database: string): Promise<string[]> {
  const list = async () =>
    (await admin<{ pid: number; application_name: string; state: string | null }[]>`
      select pid, application_name, state from pg_stat_activity where datname = ${database}`)
      .map((row) => `pid ${row.pid} "${row.application_name}" ${row.state ?? "starting"}`);
  try {
    await eventually(
      "the test's connections to close",
      async () => (await list()).length === 0,
      2_000,
    );
    return [];
  } catch {
    return await list();
  }
}

export interface DbTestOptions {
  template?: "core" | "empty";
  ignore?: boolean;
  /**
   * Turns the sanitizers off for this one test. Only for a timer a third-party library starts
   * and never clears, which nothing else can clear: the text says which and where. (Deno counts
   * an npm package's node:timers timer under both sanitizers.)
   */
  unclosableThirdPartyTimer?: string;
}

/** `Deno.test` with a fresh database that is dropped afterwards. */
export function dbTest(
  name: string,
  fn: (db: TestDb) => Promise<void>,
  options: DbTestOptions = {},
): void {
  Deno.test({
    name,
    ignore: options.ignore,
    // Every pool, timer, worker and server a test opens must be closed by its end.
    sanitizeOps: options.unclosableThirdPartyTimer === undefined,
    sanitizeResources: options.unclosableThirdPartyTimer === undefined,
    sanitizeExit: true,
    fn: async () => {
      const db = await createTestDb(options);
      let passed = false;
      try {
        await fn(db);
        passed = true;
      } finally {
        // A leak found while dropping must not hide the test's own failure.
        await db.drop().catch((error) => {
          if (passed) throw error;
        });
      }
    },
  });
}
