/**
 * `deno task bench:ab <git ref> <engine file>[,<engine file>...]`: how much server CPU a change
 * to the SQL engine saves, measured where wall-clock runs cannot tell (on a shared 2-core VM they
 * move by 10% from one run to the next, more than most single changes gain).
 *
 * Two databases on one server: B with the current migrations, A the same with the named files of
 * `sql/engine/` as they were at the ref applied over them. One client drives both alternately,
 * the order swapped every round: diamonds through their five statements (start, claim, a report
 * and claim per level, the last report), then one-step runs claimed and reported 50 at a time.
 * Each backend's CPU time comes from /proc, so waits (commits, the client) do not count. Two
 * databases with the same code differ by 1-3% in a quiet hour, up to 5% in a busy one: run it twice.
 */
import { startThrowawayPostgres } from "../src/dev/embedded_postgres.ts";
import type { Sql } from "../src/db/connect.ts";
import { fillLimits } from "../src/dev/sql_release.ts";
import { completeTasksAndClaim, readAndStartTasks } from "../src/db/tasks.ts";
import { completionOf, defineDiamond, driveDiamond } from "./diamond_chain.ts";

const [ref, files] = Deno.args;
if (!ref || !files) {
  console.error("usage: deno task bench:ab <git ref> <engine file>[,<engine file>...]");
  Deno.exit(2);
}
const ROUNDS = 10;
const DIAMONDS = 40;
const BATCH_RUNS = 500;

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS = 100;

interface Side {
  name: "A" | "B";
  sql: Sql;
  pid: number;
  workerId: string;
  diamondCpu: number;
  batchCpu: number;
}

function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

function engineFileAt(gitRef: string, file: string): string {
  const out = new Deno.Command("git", { args: ["show", `${gitRef}:sql/engine/${file}`] })
    .outputSync();
  if (!out.success) throw new Error(`git show ${gitRef}:sql/engine/${file} failed`);
  return fillLimits(new TextDecoder().decode(out.stdout), file);
}

async function diamonds(side: Side, count: number): Promise<void> {
  const claim = { flowSlug: "ab_diamond", workerId: side.workerId, vt: 5, qty: 10 };
  for (let i = 0; i < count; i++) await driveDiamond(side.sql, claim, i);
}

async function batches(side: Side, runs: number): Promise<void> {
  const claim = { flowSlug: "ab_one", workerId: side.workerId, vt: 30, qty: 50 };
  await side.sql`select count(*) from pgflow.start_flows('ab_one',
    array(select to_jsonb(i) from generate_series(1, ${runs}::int) i))`;
  let claimed = await readAndStartTasks(side.sql, claim);
  while (claimed.length > 0) {
    claimed = (await completeTasksAndClaim(side.sql, claimed.map((t) => completionOf(t, 1)), claim))
      .claimed;
  }
}

const server = await startThrowawayPostgres("engine-ab", { durable: true });
// The test harness builds its template database on this server.
Deno.env.set("EDGEFLOW_TEST_DATABASE_URL", server.url);
const { createTestDb } = await import("../tests/_support/db.ts");
try {
  const sides: Side[] = [];
  for (const name of ["A", "B"] as const) {
    const db = await createTestDb();
    if (name === "A") {
      for (const file of files.split(",")) await db.sql.unsafe(engineFileAt(ref, file));
    }
    await defineDiamond(db.sql, "ab_diamond");
    await db.sql.unsafe(`
      select pgflow.create_flow('ab_one');
      select pgflow.add_step('ab_one', 's');`);
    await db.sql.end();
    const sql = db.connect(1);
    const [{ pid }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    sides.push({ name, sql, pid, workerId: crypto.randomUUID(), diamondCpu: 0, batchCpu: 0 });
  }
  // Warm-up: plans cached, tables past their first pages.
  for (const side of sides) {
    await diamonds(side, 20);
    await batches(side, 200);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 ? [...sides].reverse() : sides) {
      let before = cpuSeconds(side.pid);
      await diamonds(side, DIAMONDS);
      side.diamondCpu += cpuSeconds(side.pid) - before;
      before = cpuSeconds(side.pid);
      await batches(side, BATCH_RUNS);
      side.batchCpu += cpuSeconds(side.pid) - before;
    }
  }
  const [a, b] = sides;
  for (const side of sides) {
    const perDiamond = side.diamondCpu * 1e6 / (DIAMONDS * ROUNDS);
    const perTask = side.batchCpu * 1e6 / (BATCH_RUNS * ROUNDS);
    console.log(
      `${side.name === "A" ? `A (${files} at ${ref})` : "B (current)"}: ` +
        `diamond ${perDiamond.toFixed(0)} us, one-step task in batches of 50 ${
          perTask.toFixed(1)
        } us of server CPU`,
    );
  }
  console.log(
    `B / A: diamond ${(b.diamondCpu / a.diamondCpu).toFixed(3)}, ` +
      `batched task ${(b.batchCpu / a.batchCpu).toFixed(3)}`,
  );
  for (const side of sides) await side.sql.end();
} finally {
  await server.stop();
}
