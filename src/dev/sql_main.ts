/**
 * `deno task sql "<statements>"`: runs SQL against DATABASE_URL or the running
 * dev database (`deno task db`) and prints the result rows of the last statement.
 */
import { connect } from "../db/connect.ts";
import { DEV_URL } from "./dev_url.ts";

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
  console.log(rows.length ? formatTable(rows) : "(no rows)");
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

/** A psql-like text table. */
function formatTable(rows: Record<string, unknown>[]): string {
  const columns = Object.keys(rows[0]);
  const cells = rows.map((row) => columns.map((column) => show(row[column])));
  const widths = columns.map((column, i) =>
    Math.max(column.length, ...cells.map((line) => line[i].length))
  );
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join(" | ");
  return [
    line(columns),
    widths.map((w) => "-".repeat(w)).join("-+-"),
    ...cells.map(line),
    `(${rows.length} row${rows.length === 1 ? "" : "s"})`,
  ].join("\n");
}

function show(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object" && value !== null) return JSON.stringify(value);
  return String(value);
}
