/**
 * `edgeflow install`: adds the SQL core's migrations to an existing Supabase
 * project and scaffolds an example flow with its worker function.
 */
import { join, relative } from "node:path";
import { listSqlFiles, readMigrations } from "../db/migrate.ts";
import { writeFlowMigration } from "../compile/write_migration.ts";
import { formatMigrationTimestamp } from "../compile/migration_timestamp.ts";

export interface InstallOptions {
  /** The Supabase project folder (holding config.toml). Default `supabase`. */
  supabasePath?: string;
  /** How the scaffolded function imports edgeflow (import map target). */
  edgeflowModule?: string;
  /** The migrations' timestamp base (default: now). */
  now?: Date;
}

export interface InstallResult {
  /** Core migrations copied now (file names). */
  added: string[];
  /** Core migrations found already present. */
  present: string[];
  /** Files of the example flow and worker created now. */
  scaffolded: string[];
}

/** The part of a core migration's file name after its timestamp. */
const coreName = (file: string) => file.replace(/^\d{14}_/, "");

export async function install(options: InstallOptions = {}): Promise<InstallResult> {
  const supabase = options.supabasePath ?? "supabase";
  try {
    await Deno.stat(join(supabase, "config.toml"));
  } catch {
    throw new Error(
      `${supabase}/config.toml not found: run \`supabase init\` first or pass --supabase-path`,
    );
  }
  const dir = join(supabase, "migrations");
  await Deno.mkdir(dir, { recursive: true });
  const existing = (await listSqlFiles(dir)).filter((file) => /^\d{14}_/.test(file));
  const existingNames = new Set(existing.map(coreName));

  // New files go after the newest migration already there, in the core's order.
  let next = Math.max(
    Number(formatMigrationTimestamp(options.now ?? new Date())),
    ...existing.map((file) => Number(file.slice(0, 14)) + 1),
  );
  const result: InstallResult = { added: [], present: [], scaffolded: [] };
  for (const migration of await readMigrations()) {
    const name = `${migration.name}.sql`;
    if (existingNames.has(name)) {
      result.present.push(name);
      continue;
    }
    const file = `${String(next++).padStart(14, "0")}_${name}`;
    await Deno.writeTextFile(join(dir, file), migration.sql, { createNew: true });
    result.added.push(file);
  }
  result.scaffolded = await scaffoldExample(supabase, options.edgeflowModule ?? defaultModule());
  return result;
}

/** Where the scaffolded worker imports edgeflow from: this copy's src/mod.ts. */
function defaultModule(): string {
  return new URL("../mod.ts", import.meta.url).href;
}

const EXAMPLE_FLOW = `import { Flow } from "edgeflow";

/** An example flow: greet each name in the input, then count the greetings. */
export default new Flow<{ names: string[] }>({ slug: "greet_users", maxAttempts: 3, timeout: 30 })
  .array({ slug: "names" }, ({ run }) => run.names)
  .map({ slug: "greet", array: "names" }, (name) => \`Hello, \${name}!\`)
  .step({ slug: "count", dependsOn: ["greet"] }, ({ greet }) => ({ greetings: greet.length }));
`;

const EXAMPLE_WORKER = `import { createWorker } from "edgeflow";
import GreetUsers from "../_flows/greet_users.ts";

Deno.serve(createWorker(GreetUsers));
`;

function workerImportMap(edgeflowModule: string): string {
  return JSON.stringify(
    {
      imports: {
        edgeflow: edgeflowModule,
        postgres: "npm:postgres@3.4.9",
        "@supabase/supabase-js": "npm:@supabase/supabase-js@2.119.0",
      },
    },
    null,
    2,
  ) + "\n";
}

/** Writes the example flow, its worker function and its migration, never overwriting. */
async function scaffoldExample(supabase: string, edgeflowModule: string): Promise<string[]> {
  const files: [string, string][] = [
    [join(supabase, "functions", "_flows", "greet_users.ts"), EXAMPLE_FLOW],
    [join(supabase, "functions", "greet-users-worker", "index.ts"), EXAMPLE_WORKER],
    [
      join(supabase, "functions", "greet-users-worker", "deno.json"),
      workerImportMap(edgeflowModule),
    ],
  ];
  const created: string[] = [];
  for (const [path, content] of files) {
    await Deno.mkdir(join(path, ".."), { recursive: true });
    try {
      await Deno.writeTextFile(path, content, { createNew: true });
      created.push(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }
  const migration = await compileExample(supabase, edgeflowModule, files[0][0]);
  if (migration) created.push(migration);
  return created.map((path) => relative(Deno.cwd(), path));
}

/**
 * Compiles the scaffolded flow into a migration. The flow module imports "edgeflow" by
 * name, which resolves only through the function's import map, so it is compiled from
 * a copy that imports this edgeflow directly.
 */
async function compileExample(
  supabase: string,
  edgeflowModule: string,
  flowPath: string,
): Promise<string | undefined> {
  const temp = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      temp,
      EXAMPLE_FLOW.replace('from "edgeflow"', `from "${edgeflowModule}"`),
    );
    const result = await writeFlowMigration(temp, {
      supabasePath: supabase,
      sourceLabel: flowPath,
    });
    return result.created ? result.path : undefined;
  } finally {
    await Deno.remove(temp);
  }
}
