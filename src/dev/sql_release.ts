/**
 * The SQL engine's release model. `sql/` is the source: `sql/upgrades/NNN_<name>.sql`
 * hold what a release changes in the schema (append-only; 001 is the baseline),
 * `sql/engine/*.sql` the engine's functions by verb (each `create or replace`,
 * edited freely). Release NNN is the migration
 * `migrations/<version>_edgeflow_NNN_<name>.sql` = its upgrade file, then every
 * engine file, with `{{NAME}}` placeholders filled from `src/limits.ts`.
 *
 * `migrations/manifest.json` lists each migration with its SHA-256. A released
 * migration never changes (the check fails if it does); the newest one may be
 * unreleased and is rebuilt from the source by `deno task sql:build` until
 * `deno task sql:release` freezes it.
 */
import * as limits from "../limits.ts";
import { CORE_MIGRATIONS_DIR, listSqlFiles } from "../db/migrate.ts";
import { type Manifest, type ManifestEntry, sha256Hex } from "../db/manifest.ts";
import { formatMigrationTimestamp } from "../compile/migration_timestamp.ts";

export const SQL_DIR = new URL("../../sql/", import.meta.url);
const UPGRADES_DIR = new URL("upgrades/", SQL_DIR);
const ENGINE_DIR = new URL("engine/", SQL_DIR);
const MANIFEST = new URL("manifest.json", CORE_MIGRATIONS_DIR);

/**
 * The engine files in the order a migration creates them: SQL-language functions
 * are checked when created, so what they call comes first; privileges come last.
 */
export const ENGINE_FILES = [
  "clock.sql",
  "errors.sql",
  "events.sql",
  "flow_definitions.sql",
  "task_messages.sql",
  "wakeups.sql",
  "queue_access.sql",
  "run_progress.sql",
  "start_flow.sql",
  "claiming.sql",
  "failure_and_retry.sql",
  "step_conditions.sql",
  "stall_recovery.sql",
  "completion.sql",
  "run_operations.sql",
  "run_reads.sql",
  "workers.sql",
  "keep_alive.sql",
  "flow_shapes.sql",
  "maintenance.sql",
  "privileges.sql",
  "switch_grants.sql",
];

const UPGRADE_NAME = /^(\d{3})_([a-z0-9_]+)\.sql$/;
const MIGRATION_NAME = /^(\d{14})_edgeflow_(\d{3})_([a-z0-9_]+)\.sql$/;

/** Fills `{{NAME}}` placeholders from src/limits.ts; an unknown name is an error. */
export function fillLimits(text: string, source: string): string {
  const values = limits as Record<string, unknown>;
  return text.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (typeof value === "number") return String(value);
    if (typeof value === "string") return value.replaceAll("'", "''");
    throw new Error(`${source}: {{${name}}} is not a constant of src/limits.ts`);
  });
}

interface Upgrade {
  number: string;
  name: string;
  text: string;
}

async function readUpgrades(): Promise<Upgrade[]> {
  const upgrades: Upgrade[] = [];
  for (const file of await listSqlFiles(UPGRADES_DIR)) {
    const match = UPGRADE_NAME.exec(file);
    if (!match) throw new Error(`sql/upgrades/${file} must be named NNN_<name>.sql`);
    upgrades.push({
      number: match[1],
      name: match[2],
      text: await Deno.readTextFile(new URL(file, UPGRADES_DIR)),
    });
  }
  upgrades.forEach((upgrade, i) => {
    if (Number(upgrade.number) !== i + 1) {
      throw new Error(
        `sql/upgrades/ must be numbered 001, 002, ... without gaps; found ${upgrade.number}`,
      );
    }
  });
  return upgrades;
}

/** Every engine file, filled in, in creation order. */
export async function engineText(): Promise<string> {
  const present = new Set(await listSqlFiles(ENGINE_DIR));
  const unknown = [...present].filter((file) => !ENGINE_FILES.includes(file));
  if (unknown.length) {
    throw new Error(
      `sql/engine/${unknown[0]} is not listed in ENGINE_FILES (src/dev/sql_release.ts)`,
    );
  }
  const parts: string[] = [];
  for (const file of ENGINE_FILES) {
    const text = await Deno.readTextFile(new URL(file, ENGINE_DIR));
    parts.push(
      `-- ==== sql/engine/${file} ====\n${fillLimits(text, `sql/engine/${file}`).trim()}\n`,
    );
  }
  return parts.join("\n");
}

function migrationText(upgrade: Upgrade, engine: string): string {
  return [
    `-- edgeflow SQL engine, release ${upgrade.number} (${upgrade.name}).`,
    "-- Generated from sql/ by `deno task sql:build`; never edit: change sql/ and build a release.",
    "",
    `-- ==== sql/upgrades/${upgrade.number}_${upgrade.name}.sql ====`,
    fillLimits(upgrade.text, `sql/upgrades/${upgrade.number}_${upgrade.name}.sql`).trim(),
    "",
    engine,
  ].join("\n");
}

export async function readManifest(): Promise<Manifest> {
  try {
    return JSON.parse(await Deno.readTextFile(MANIFEST)) as Manifest;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { migrations: [] };
    throw error;
  }
}

/** What migrations/ must hold: released files as they are, the pending one built from sql/. */
async function plan(now: Date): Promise<{ manifest: Manifest; files: Map<string, string> }> {
  const manifest = await readManifest();
  const upgrades = await readUpgrades();
  const engine = await engineText();
  const files = new Map<string, string>();
  const entries: ManifestEntry[] = [];
  let lastVersion = 0;
  for (const upgrade of upgrades) {
    const previous = manifest.migrations.find((entry) =>
      MIGRATION_NAME.exec(entry.file)?.[2] === upgrade.number
    );
    if (previous?.released) {
      entries.push(previous);
      lastVersion = Number(previous.file.slice(0, 14));
      continue;
    }
    if (upgrade !== upgrades.at(-1)) {
      throw new Error(
        `sql/upgrades/${upgrade.number}_${upgrade.name}.sql is not the newest upgrade, yet unreleased`,
      );
    }
    const version = previous && MIGRATION_NAME.exec(previous.file)?.[3] === upgrade.name
      ? previous.file.slice(0, 14)
      : String(Math.max(Number(formatMigrationTimestamp(now)), lastVersion + 1));
    const file = `${version}_edgeflow_${upgrade.number}_${upgrade.name}.sql`;
    const text = migrationText(upgrade, engine);
    files.set(file, text);
    entries.push({ file, sha256: await sha256Hex(text), released: false });
  }
  return { manifest: { migrations: entries }, files };
}

/** Problems with migrations/ against sql/ and the manifest, in words (empty when in order). */
export async function releaseDrift(): Promise<string[]> {
  const problems: string[] = [];
  const { manifest, files } = await plan(new Date());
  const stored = await readManifest();
  const listed = new Set(manifest.migrations.map((entry) => entry.file));
  for (const file of await listSqlFiles(CORE_MIGRATIONS_DIR)) {
    if (!listed.has(file)) problems.push(`migrations/${file} is not in migrations/manifest.json`);
  }
  for (const entry of manifest.migrations) {
    const text = await Deno.readTextFile(new URL(entry.file, CORE_MIGRATIONS_DIR)).catch(() => "");
    if (entry.released) {
      if (await sha256Hex(text) !== entry.sha256) {
        problems.push(
          `migrations/${entry.file} was released and must never change (its SHA-256 differs from ` +
            "the manifest): put the change in a new sql/upgrades file",
        );
      }
    } else if (text !== files.get(entry.file)) {
      problems.push(`migrations/${entry.file} is not what sql/ builds: run deno task sql:build`);
    }
  }
  const released = manifest.migrations.filter((entry) => entry.released);
  if (released.length === manifest.migrations.length && released.length > 0) {
    // All released: the engine files must be what the last release holds.
    const last = released.at(-1)!;
    const text = await Deno.readTextFile(new URL(last.file, CORE_MIGRATIONS_DIR));
    if (!text.endsWith(await engineText())) {
      problems.push(
        `sql/engine/ changed since release ${last.file}: add sql/upgrades/` +
          `${String(released.length + 1).padStart(3, "0")}_<name>.sql and run deno task sql:build`,
      );
    }
  }
  if (JSON.stringify(stored) !== JSON.stringify(manifest)) {
    problems.push("migrations/manifest.json is out of date: run deno task sql:build");
  }
  return problems;
}

/** Writes the pending migration and the manifest; returns the pending file, if any. */
export async function buildRelease(now = new Date()): Promise<string | undefined> {
  const { manifest, files } = await plan(now);
  const stale = (await listSqlFiles(CORE_MIGRATIONS_DIR)).filter((file) =>
    !manifest.migrations.some((entry) => entry.file === file)
  );
  for (const file of stale) await Deno.remove(new URL(file, CORE_MIGRATIONS_DIR));
  for (const [file, text] of files) {
    await Deno.writeTextFile(new URL(file, CORE_MIGRATIONS_DIR), text);
  }
  await writeManifest(manifest);
  return [...files.keys()][0];
}

/** Freezes the pending migration: from now on it never changes. */
export async function markReleased(): Promise<string> {
  await buildRelease();
  const manifest = await readManifest();
  const pending = manifest.migrations.find((entry) => !entry.released);
  if (!pending) throw new Error("nothing to release: add a sql/upgrades file first");
  pending.released = true;
  await writeManifest(manifest);
  return pending.file;
}

async function writeManifest(manifest: Manifest): Promise<void> {
  await Deno.writeTextFile(MANIFEST, JSON.stringify(manifest, null, 2) + "\n");
}
