/**
 * Statements sent in one round trip, with their values written into the SQL text.
 *
 * With `prepare: false` (which transaction poolers need) postgres.js sends a statement that has
 * parameters in two round trips: it first asks the server for the parameters' types. On a
 * worker's hot path (a claim, a batch of reports: one statement per DAG level) that second wait
 * cost up to 1.2 ms a statement on the benchmark machine. `oneTrip` renders each value as a literal
 * and sends the text by the simple query protocol, which every pooler passes.
 *
 * A value gets into the text only through `literal`, which checks it against its type; text is
 * dollar-quoted with a tag that does not occur in it, so no value can end its literal early.
 * Nothing is pipelined behind such a statement (see NOTHING_BEHIND).
 */
import type postgres from "postgres";
import type { Sql } from "./connect.ts";

const brand: unique symbol = Symbol("sql literal");

/** A value rendered as SQL text by `literal` (the only way to make one). */
export interface SqlLiteral {
  readonly [brand]: true;
  readonly text: string;
}

function make(text: string): SqlLiteral {
  // Parenthesised, so that no neighbouring text can join it: `-` before a negative number
  // would start a comment, an identifier before a `$` would absorb the dollar quote.
  return { [brand]: true, text: `(${text})` };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function quoted(value: string, what: string): string {
  if (typeof value !== "string") {
    throw new TypeError(`${what} must be a string, got ${typeof value}`);
  }
  if (value.includes("\0")) {
    throw new TypeError(`${what} contains a NUL character, which PostgreSQL text cannot hold`);
  }
  // The literal ends at the first `$tag$` after its opening: there must be none before the
  // closing one, counting one that starts inside the value and ends in the closing tag.
  for (let n = 0;; n++) {
    const tag = `$v${n === 0 ? "" : n}$`;
    if ((value + tag).indexOf(tag) === value.length) return `${tag}${value}${tag}`;
  }
}

function uuidText(value: string, what: string): string {
  if (typeof value !== "string" || !UUID.test(value)) {
    throw new TypeError(`${what} must be a UUID, got ${JSON.stringify(value)}`);
  }
  return `'${value}'`;
}

function intText(value: number, what: string): string {
  if (!Number.isSafeInteger(value)) {
    throw new TypeError(`${what} must be an integer, got ${String(value)}`);
  }
  return String(value);
}

function arrayOf<T>(
  values: readonly T[],
  element: (value: T, what: string) => string,
  type: string,
  what: string,
): SqlLiteral {
  if (!Array.isArray(values)) throw new TypeError(`${what} must be an array`);
  const items = values.map((value, index) => element(value, `${what}[${index}]`));
  return make(`array[${items.join(",")}]::${type}[]`);
}

const NULL_TYPES = ["uuid", "text", "int", "jsonb"] as const;
type NullType = typeof NULL_TYPES[number];

/** Literals, each checked against its type; `what` names the value in an error. */
export const literal = {
  text: (value: string, what = "text value"): SqlLiteral => make(quoted(value, what)),
  uuid: (value: string, what = "uuid value"): SqlLiteral => make(`${uuidText(value, what)}::uuid`),
  int: (value: number, what = "integer value"): SqlLiteral => make(`${intText(value, what)}::int`),
  /** JSON text (already serialised and checked by the caller) as jsonb. */
  jsonb: (json: string, what = "JSON value"): SqlLiteral => make(`${quoted(json, what)}::jsonb`),
  textArray: (values: readonly string[], what = "text array"): SqlLiteral =>
    arrayOf(values, quoted, "text", what),
  uuidArray: (values: readonly string[], what = "uuid array"): SqlLiteral =>
    arrayOf(values, uuidText, "uuid", what),
  intArray: (values: readonly number[], what = "integer array"): SqlLiteral =>
    arrayOf(values, intText, "int", what),
  bigintArray: (values: readonly number[], what = "bigint array"): SqlLiteral =>
    arrayOf(values, intText, "bigint", what),
  /** JSON texts as jsonb[]. */
  jsonbArray: (jsons: readonly string[], what = "JSON array"): SqlLiteral =>
    arrayOf(jsons, quoted, "jsonb", what),
  /** SQL NULL of a type. */
  nullOf: (type: NullType): SqlLiteral => {
    if (!NULL_TYPES.includes(type)) {
      throw new TypeError(`no NULL literal of type ${JSON.stringify(type)}`);
    }
    return make(`null::${type}`);
  },
};

/**
 * Runs a statement whose values are `literal`s in one round trip:
 * `oneTrip(sql)\`select f(${literal.uuid(id)})\``. The query can be cancelled like any other.
 */
export function oneTrip(sql: Sql) {
  return <T extends object[]>(
    strings: TemplateStringsArray,
    ...values: SqlLiteral[]
  ): postgres.PendingQuery<T> => {
    let text = strings[0];
    values.forEach((value, index) => {
      if (value?.[brand] !== true) {
        throw new TypeError(`value ${index + 1} of a one-trip statement is not an SQL literal`);
      }
      text += value.text + strings[index + 1];
    });
    return sql.unsafe<T>(text, [], NOTHING_BEHIND);
  };
}

/**
 * Sends no other statement behind a one-trip statement on its connection. postgres.js would
 * (it pipelines behind a statement without parameters); through a transaction pooler, a
 * statement with parameters sent that way, which asks for its parameter types before it is
 * bound, straddled two transactions and never got its answer. `onexecute` is postgres.js's own
 * hook for this (its transactions use it); its type definitions leave it out. A falsy answer
 * marks the connection full until the statement is done.
 */
const NOTHING_BEHIND = { onexecute: () => false } as { prepare?: boolean };
