/**
 * `edgeflow install`: adds the SQL core's migrations to an existing Supabase
 * project and scaffolds an example flow with its worker function.
 */
import { join, relative } from "node:path";
import { readMigrations } from "../db/migrate.ts";
import { writeFlowMigration } from "../compile/write_migration.ts";

export interface InstallOptions {
  /** The Supabase project folder (holding config.toml). Default `supabase`. */
  supabasePath?: string;
  /** How the scaffolded function imports edgeflow (import map target). */
  edgeflowModule?: string;
}

export interface InstallResult {
  /** Core migrations copied now (file names). */
  added: string[];
  /** Core migrations found already present. */
  present: string[];
  /** Files of the example flow and worker created now. */
  scaffolded: string[];
}

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
  const result: InstallResult = { added: [], present: [], scaffolded: [] };
  // Core migrations keep their own versions, so `supabase db push`, `edgeflow migrate`
  // and a later install all name the same file the same way.
  for (const migration of await readMigrations()) {
    const file = `${migration.version}_${migration.name}.sql`;
    const path = join(dir, file);
    const present = await Deno.readTextFile(path).catch((error) => {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    });
    if (present === undefined) {
      await Deno.writeTextFile(path, migration.sql, { createNew: true });
      result.added.push(file);
    } else if (present === migration.sql) {
      result.present.push(file);
    } else {
      throw new Error(
        `${path} differs from edgeflow's migration of that name: a released migration never ` +
          "changes, so this copy was edited (or came from an unreleased build); restore it " +
          "from edgeflow and run install again",
      );
    }
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
