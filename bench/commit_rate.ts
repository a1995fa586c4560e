/**
 * The server's commit rate: single-row INSERT transactions per second from
 * 8 connections. The yardstick the worker's throughput is measured against.
 */
import type { Sql } from "../src/db/connect.ts";

export async function measureCommitRate(
  open: (max: number) => Sql,
  seconds = 3,
  connections = 8,
): Promise<number> {
  const setup = open(1);
  await setup`create table if not exists bench_commits (id bigserial primary key, at timestamptz default now())`;
  await setup.end();
  const pools = Array.from({ length: connections }, () => open(1));
  const deadline = performance.now() + seconds * 1000;
  const began = performance.now();
  const counts = await Promise.all(pools.map(async (sql) => {
    let n = 0;
    while (performance.now() < deadline) {
      await sql`insert into bench_commits default values`;
      n++;
    }
    return n;
  }));
  const elapsed = (performance.now() - began) / 1000;
  await Promise.all(pools.map((sql) => sql.end()));
  return counts.reduce((a, b) => a + b, 0) / elapsed;
}
