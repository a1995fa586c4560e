/**
 * Applies the SQL core's migrations in order, each in its own transaction, and
 * records them in `supabase_migrations.schema_migrations`, the table the
 * Supabase CLI keeps, so `supabase db push` and edgeflow agree on what is applied.
 */
import type { Sql } from "./connect.ts";
import { readText } from "./read_text.ts";
import { parseManifest, sha256Hex } from "./manifest.ts";

export interface Migration {
  /** The 14-digit timestamp that orders migrations. */
  version: string;
  /** The part of the file name after the timestamp, without `.sql`. */
  name: string;
  sql: string;
}

const FILE_NAME = /^(\d{14})_([a-z0-9_]+)\.sql$/;

export const CORE_MIGRATIONS_DIR = new URL("../../migrations/", import.meta.url);

/**
 * Reads `<dir>/*.sql`, rejecting any file whose name is not `<14-digit timestamp>_<name>.sql`.
 * Over http(s), where folders cannot be listed, the names come from `<dir>/manifest.json`,
 * and each file must match the SHA-256 the manifest gives.
 */
export async function readMigrations(dir: URL = CORE_MIGRATIONS_DIR): Promise<Migration[]> {
  const hashes = dir.protocol === "file:" ? undefined : await readManifestHashes(dir);
  const names = hashes ? [...hashes.keys()] : await listSqlFiles(dir);
  const migrations: Migration[] = [];
  for (const name of names) {
    const match = FILE_NAME.exec(name);
    if (!match) {
      throw new Error(
        `migration file ${name} in ${dir.pathname} must be named <14-digit timestamp>_<name>.sql`,
      );
    }
    const sql = await readText(new URL(name, dir));
    if (hashes && await sha256Hex(sql) !== hashes.get(name)) {
      throw new Error(`${new URL(name, dir).href} does not match its SHA-256 in manifest.json`);
    }
    migrations.push({ version: match[1], name: match[2], sql });
  }
  migrations.sort((a, b) => a.version.localeCompare(b.version));
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i].version === migrations[i - 1].version) {
      throw new Error(`two migrations share version ${migrations[i].version} in ${dir.pathname}`);
    }
  }
  return migrations;
}

/** The `.sql` files of a local folder, sorted; none when the folder does not exist. */
export async function listSqlFiles(dir: string | URL): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".sql")) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

async function readManifestHashes(dir: URL): Promise<Map<string, string>> {
  const url = new URL("manifest.json", dir);
  const manifest = parseManifest(await readText(url), url.href);
  return new Map(manifest.migrations.map((entry) => [entry.file, entry.sha256]));
}

/** Applies the migrations not yet recorded; returns the versions it applied. */
export async function applyMigrations(sql: Sql, migrations: Migration[]): Promise<string[]> {
  await sql.unsafe(`
    create schema if not exists supabase_migrations;
    create table if not exists supabase_migrations.schema_migrations (
      version text primary key,
      statements text[],
      name text
    );`);
  const applied: string[] = [];
  for (const migration of migrations) {
    const done = await sql.begin(async (tx) => {
      // Serialise concurrent migrators; the second one finds the row and skips.
      await tx`select pg_advisory_xact_lock(hashtext('edgeflow.migrate'))`;
      const [row] = await tx`
        select 1 from supabase_migrations.schema_migrations where version = ${migration.version}`;
      if (row) return false;
      try {
        await tx.unsafe(migration.sql);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(`migration ${migration.version}_${migration.name}.sql failed: ${message}`, {
          cause: error,
        });
      }
      await tx`
        insert into supabase_migrations.schema_migrations (version, statements, name)
        values (${migration.version}, ${[migration.sql]}, ${migration.name})`;
      return true;
    });
    if (done) applied.push(migration.version);
  }
  return applied;
}
