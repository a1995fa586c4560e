/**
 * One-trip statements: every value arrives at the server exactly as given, whatever it holds
 * (quotes, backslashes, dollar signs, the quoting tag itself), and a value that is not what its
 * literal says is refused before anything is sent.
 */
import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import { literal, oneTrip, type SqlLiteral } from "../src/db/one_trip.ts";

const HOSTILE = [
  "",
  "plain",
  "it's",
  "back\\slash\\",
  "$v$",
  "$v",
  "ends with $v",
  "$v$'); drop table pgflow.runs; --",
  "$v$$v1$$v2$",
  "$$",
  "$",
  '"quoted", {braces}, null, NULL',
  "multi\nline\ttab",
  "unicode: zürich ✓ 𝄞",
];

dbTest("text values of any content arrive unchanged, alone and in arrays", async ({ sql }) => {
  const run = oneTrip(sql);
  for (const value of HOSTILE) {
    const [row] = await run<{ value: string }[]>`select ${literal.text(value)} as value`;
    assert.equal(row.value, value);
  }
  const [row] = await run<{ values: string[]; n: number }[]>`
    select ${literal.textArray(HOSTILE)} as values, cardinality(${
    literal.textArray(HOSTILE)
  }) as n`;
  assert.deepEqual(row.values, HOSTILE);
  assert.equal(row.n, HOSTILE.length);
  const [{ exists }] = await sql`select to_regclass('pgflow.runs') is not null as exists`;
  assert.ok(exists, "no value ran as SQL");
});

dbTest("JSON, uuid and integer values keep their types and values", async ({ sql }) => {
  const run = oneTrip(sql);
  const json = JSON.stringify({ text: "$v$ it's \\ $v1$", list: [1, null, true], n: -2.5 });
  const id = crypto.randomUUID();
  const [row] = await run<
    {
      doc: unknown;
      docs: unknown[];
      id: string;
      ids: string[];
      n: number;
      ns: number[];
      minus: number;
      big: string[];
      types: string;
      null_ok: boolean;
    }[]
  >`
    select ${literal.jsonb(json)} as doc, ${literal.jsonbArray([json, "1", "null"])} as docs,
           ${literal.uuid(id)} as id, ${literal.uuidArray([id, id])} as ids,
           ${literal.int(-7)} as n, ${literal.intArray([0, 2_000_000_000])} as ns,
           10 -${literal.int(-7)} as minus,
           ${literal.bigintArray([9_007_199_254_740_991])}::text[] as big,
           pg_typeof(${literal.jsonb("1")})::text || ',' || pg_typeof(${literal.uuid(id)})::text
             || ',' || pg_typeof(${literal.intArray([])})::text
             || ',' || pg_typeof(${literal.bigintArray([])})::text
             || ',' || pg_typeof(${literal.jsonbArray([])})::text as types,
           ${literal.nullOf("uuid")} is null and pg_typeof(${
    literal.nullOf("jsonb")
  }) = 'jsonb'::regtype
             as null_ok`;
  assert.deepEqual(row.doc, JSON.parse(json));
  assert.deepEqual(row.docs, [JSON.parse(json), 1, null]);
  assert.equal(row.id, id);
  assert.deepEqual(row.ids, [id, id]);
  assert.equal(row.n, -7);
  assert.deepEqual(row.ns, [0, 2_000_000_000]);
  assert.equal(row.minus, 17, "a `-` before a negative literal is a minus, not a comment");
  assert.deepEqual(row.big, ["9007199254740991"]);
  assert.equal(row.types, "jsonb,uuid,integer[],bigint[],jsonb[]");
  assert.equal(row.null_ok, true);
});

Deno.test("a value that is not what its literal says is refused, naming it", () => {
  assert.throws(() => literal.uuid("1; drop table x", "run id"), /run id must be a UUID/);
  assert.throws(() => literal.uuidArray(["x"], "run ids"), /run ids\[0\] must be a UUID/);
  assert.throws(() => literal.int(1.5, "qty"), /qty must be an integer, got 1.5/);
  assert.throws(() => literal.intArray([1, NaN], "task indexes"), /task indexes\[1\]/);
  assert.throws(() => literal.text("a\0b", "step slug"), /step slug contains a NUL/);
  assert.throws(
    () => literal.text(42 as unknown as string, "flow slug"),
    /flow slug must be a string, got number/,
  );
  assert.throws(
    () => literal.nullOf("uuid; drop table x" as "uuid"),
    /no NULL literal of type "uuid; drop table x"/,
  );
  assert.throws(
    () => literal.textArray("abc" as unknown as string[], "step slugs"),
    /step slugs must be an array/,
  );
});

dbTest(
  "a value that did not come from `literal` is refused before anything is sent",
  async ({ sql }) => {
    const forged = { text: "1; select pg_sleep(10)" } as unknown as SqlLiteral;
    assert.throws(() => oneTrip(sql)`select ${forged}`, /value 1 of a one-trip statement is not/);
    const raw = "x" as unknown as SqlLiteral;
    assert.throws(() => oneTrip(sql)`select ${raw}`, /not an SQL literal/);
    const [{ sent }] = await sql`
      select count(*)::int as sent from pg_stat_activity
      where query like '%pg_sleep(10)%' and pid <> pg_backend_pid()`;
    assert.equal(sent, 0);
  },
);
