/**
 * `deno task sql "<statements>"`: runs SQL against DATABASE_URL or the running
 * dev database (`deno task db`) and prints the result rows of the last statement.
 */
import { connect } from "../db/connect.ts";
import { DEV_URL } from "./dev_database.ts";

const text = Deno.args.join(" ").trim();
if (!text) {
  console.error('usage: deno task sql "<SQL statements>"');
  Deno.exit(2);
}
const url = Deno.env.get("DATABASE_URL") ?? DEV_URL;
const sql = connect(url, { max: 1 });
try {
  const results = await sql.unsafe(text).simple();
  const last = Array.isArray(results[0]) || results.length === 0 ? results.at(-1) ?? [] : results;
  const rows = (Array.isArray(last) ? last : [last]) as Record<string, unknown>[];
  if (rows.length) {
    console.table(
      rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, show(v)]))),
    );
  } else console.log("(no rows)");
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  if (/ECONNREFUSED|connect/i.test(message) && !Deno.env.get("DATABASE_URL")) {
    console.error(`cannot reach the dev database at ${DEV_URL}: start it with \`deno task db\``);
  } else {
    console.error(`error: ${message}`);
  }
  Deno.exitCode = 1;
} finally {
  await sql.end();
}

function show(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object" && value !== null) return JSON.stringify(value);
  return String(value);
}
