/**
 * Two fresh databases on the test server, one with the real pgmq extension and one with
 * edgeflow's pgmq-compatible SQL, for running the same SQL on both and comparing answers
 * (tests/pgmq_differential_test.ts).
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import type { Sql } from "../../src/db/connect.ts";
import { connect } from "../../src/db/connect.ts";
import { readText } from "../../src/db/read_text.ts";
import { PGMQ_COMPAT_SQL } from "../../src/dev/pgmq.ts";
import { adminUrl, createTestDb } from "./db.ts";

export type SideName = "real" | "compat";

export interface Side {
  name: SideName;
  sql: Sql;
  /** Another pool on the same database. */
  connect(max?: number): Sql;
  /** Severities and texts of the WARNINGs the last `run` raised. */
  warnings: string[];
}

/** A statement's answer with times made relative, so two databases' answers compare. */
export interface Answer {
  /** "name type" of each column. */
  columns: string[];
  rows: unknown[][];
  /** How many WARNINGs the statement raised. */
  warnings: number;
}

export type Outcome = Answer | { error: { code: string; message: string } };

/** Whether the server can `create extension pgmq`; if not, says what is missing. */
export async function realPgmqMissing(): Promise<string | undefined> {
  const admin = connect(await adminUrl(), { max: 1 });
  try {
    const [available] = await admin`select 1 from pg_available_extensions where name = 'pgmq'`;
    if (available) return undefined;
    // pg_config is for superusers; without it the message names the folder generically.
    const share = await admin<{ setting: string }[]>`
      select setting from pg_config where name = 'SHAREDIR'`.then(
      ([row]) => row?.setting,
      () => undefined,
    );
    const folder = share ? `${share}/extension` : "the server's extension folder";
    return `the server has no pgmq extension: copy pgmq.control and pgmq--1.5.1.sql from ` +
      `../shared/pgmq/1.5.1 into ${folder}`;
  } finally {
    await admin.end();
  }
}

/** `Deno.test` with a real-pgmq database and a compat-SQL database, both dropped afterwards. */
export function pairTest(
  name: string,
  fn: (pair: PgmqPair) => Promise<void>,
  options: { ignore?: boolean } = {},
): void {
  Deno.test({
    name,
    ignore: options.ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const [realDb, compatDb] = await Promise.all([
        createTestDb({ template: "empty" }),
        createTestDb({ template: "empty" }),
      ]);
      const pools: Sql[] = [];
      try {
        const side = (name: SideName, url: string): Side => {
          const warnings: string[] = [];
          const open = (max = 2) => {
            const pool = postgres(url, {
              prepare: false,
              max,
              onnotice: (notice) => {
                if (notice.severity === "WARNING") warnings.push(String(notice.message));
              },
              types: {
                bigint: {
                  to: 20,
                  from: [20],
                  serialize: (value: number) => String(value),
                  parse: (value: string) => Number(value),
                },
              },
            });
            pools.push(pool);
            return pool;
          };
          return { name, sql: open(), connect: open, warnings };
        };
        const real = side("real", realDb.url);
        const compat = side("compat", compatDb.url);
        await real.sql`create extension pgmq`;
        await compat.sql.unsafe(await readText(PGMQ_COMPAT_SQL));
        await fn(new PgmqPair(real, compat));
      } finally {
        await Promise.all(pools.map((pool) => pool.end({ timeout: 1 })));
        await Promise.all([realDb.drop(), compatDb.drop()]);
      }
    },
  });
}

const TIMESTAMPTZ_OID = 1184;

export class PgmqPair {
  constructor(readonly real: Side, readonly compat: Side) {}

  get sides(): [Side, Side] {
    return [this.real, this.compat];
  }

  /** Runs `text` on both databases, each in its own transaction. */
  run(text: string): Promise<[Outcome, Outcome]> {
    return Promise.all([runOn(this.real, text), runOn(this.compat, text)]);
  }

  /** Runs `text` on both and asserts the same columns, types, values and WARNING count. */
  async same(text: string): Promise<Answer> {
    const [real, compat] = await this.run(text);
    assert.deepEqual(compat, real, `real pgmq and the compat SQL differ on:\n${text}`);
    assert.ok("rows" in real, `both raised on:\n${text}\n${JSON.stringify(real)}`);
    return real;
  }

  /** Runs `text` on both and asserts both raise the same SQLSTATE; returns both messages. */
  async bothRaise(text: string): Promise<{ code: string; real: string; compat: string }> {
    const [real, compat] = await this.run(text);
    assert.ok("error" in real, `real pgmq did not raise on:\n${text}\n${JSON.stringify(real)}`);
    assert.ok("error" in compat, `compat did not raise on:\n${text}\n${JSON.stringify(compat)}`);
    assert.equal(compat.error.code, real.error.code, `SQLSTATE differs on:\n${text}`);
    return { code: real.error.code, real: real.error.message, compat: compat.error.message };
  }

  /** Runs `fn` on both sides at once and returns their results. */
  each<T>(fn: (side: Side) => Promise<T>): Promise<[T, T]> {
    return Promise.all([fn(this.real), fn(this.compat)]);
  }
}

/**
 * Runs `text` in a transaction and describes its last result. Column types are named
 * (composite type OIDs differ between databases); timestamptz values become whole seconds
 * from the transaction's now(), e.g. "now+30s", so no two calls need the same clock. A time
 * from 3 s before now() (a queue or message created by an earlier call) to just under 1 s
 * after it (a vt of 0 s, stamped by clock_timestamp()) is "about now": how far it is from
 * now() depends on the machine's load, not on pgmq.
 */
async function runOn(side: Side, text: string): Promise<Outcome> {
  side.warnings.length = 0;
  try {
    return await side.sql.begin(async (tx) => {
      const [{ now }] = await tx<{ now: Date }[]>`select now() as now`;
      const result = await tx.unsafe(text);
      const oids = result.columns?.map((c) => c.type) ?? [];
      const types = await tx<{ oid: number; name: string }[]>`
        select oid::int as oid, format_type(oid, null) as name
        from pg_type where oid = any(${oids}::oid[])`;
      const typeName = new Map(types.map((t) => [t.oid, t.name]));
      const columns = (result.columns ?? []).map((c) => `${c.name} ${typeName.get(c.type)}`);
      const rows = [...result].map((row) =>
        (result.columns ?? []).map((c) => {
          const value = row[c.name];
          if (c.type === TIMESTAMPTZ_OID && value instanceof Date) {
            const delta = value.getTime() - now.getTime();
            if (delta < 1_000 && delta >= -3_000) return "about now";
            const seconds = Math.round(delta / 1000);
            return `now${seconds < 0 ? "" : "+"}${seconds}s`;
          }
          return value;
        })
      );
      return { columns, rows, warnings: side.warnings.length };
    });
  } catch (error) {
    const { code, message } = error as { code?: string; message: string };
    if (!code) throw error;
    return { error: { code, message } };
  }
}
