/**
 * `deno task sql:build`: rebuilds the pending (unreleased) core migration from sql/,
 * the manifest and supabase/migrations. `deno task sql:build --release` then freezes
 * the pending migration: it will never change again.
 */
import { buildRelease, markReleased, releaseDrift } from "./sql_release.ts";
import { syncMigrations } from "./supabase_project.ts";

const pending = await buildRelease();
if (Deno.args.includes("--release")) {
  console.log(`released migrations/${await markReleased()}`);
} else {
  console.log(pending ? `built migrations/${pending} (unreleased)` : "no unreleased migration");
}
await syncMigrations();
const problems = await releaseDrift();
for (const problem of problems) console.error(problem);
if (problems.length) Deno.exit(1);
