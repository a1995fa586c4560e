/**
 * What this machine allows, printed beside the targets it bounds: the shapes of two measurements
 * with the engine's own work taken out.
 *
 * - The latency chain: a diamond run is five serial commits between two notifications (the start,
 *   then the worker's claim and three reports). Here the client inserts a row and NOTIFYs; a
 *   listener makes four serial one-row commits and NOTIFYs back.
 * - A run's start: the rows a one-step run needs (run, step state, task, message) in the
 *   engine's own tables and queue, written by fewest_writes.sql's start called once per run,
 *   2,000 times in one statement; once without events and once with its two events through
 *   `realtime.send`, as pgflow's contract sends them where Supabase Realtime exists.
 * - A diamond's fewest writes: the rows, messages and notifications a diamond run leaves in the
 *   engine's own tables and queue, written by five plain PL/pgSQL statements shaped like the
 *   engine's five (fewest_writes.sql), with none of its checks, locks, options or bookkeeping;
 *   driven and timed beside the engine's five statements in diamond_chain.ts.
 */
import { medianMs, START_ROUNDS } from "./percentiles.ts";
import { connect, type Sql } from "../src/db/connect.ts";

/** Round trips of the latency chain, ms each, in ascending order. */
export async function latencyChainFloor(url: string, runs: number): Promise<number[]> {
  const client = connect(url, { max: 1 });
  const worker = connect(url, { max: 1 });
  // postgres.js LISTENs on a connection of its own for each pool.
  const clientEars = connect(url, { max: 1 });
  const workerEars = connect(url, { max: 1 });
  try {
    // Statements without parameters: with `prepare: false` postgres.js sends one that has
    // parameters in two round trips, which the engine's hot statements do not pay (one_trip.ts).
    await client`create table bench_floor_chain (id bigserial primary key)`;
    let answered: (() => void) | undefined;
    await clientEars.listen("bench_floor_done", () => answered?.());
    await workerEars.listen("bench_floor_start", async () => {
      for (let commit = 0; commit < 3; commit++) {
        await worker`insert into bench_floor_chain default values`;
      }
      await worker`with d as (insert into bench_floor_chain default values)
                   select pg_notify('bench_floor_done', '')`;
    });
    const samples: number[] = [];
    for (let i = 0; i < runs; i++) {
      // An idle gap between runs, as in the latency measurement.
      await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20));
      const done = new Promise<void>((resolve) => answered = resolve);
      const began = performance.now();
      await client`with s as (insert into bench_floor_chain default values)
                   select pg_notify('bench_floor_start', '')`;
      await done;
      samples.push(performance.now() - began);
    }
    await client`drop table bench_floor_chain`;
    return samples.sort((a, b) => a - b);
  } finally {
    await Promise.all([client.end(), worker.end(), clientEars.end(), workerEars.end()]);
  }
}

/** Installs bench/fewest_writes.sql (schema bench_fewest_writes); its flows are the caller's. */
export async function installFewestWrites(sql: Sql): Promise<void> {
  await sql.unsafe(Deno.readTextFileSync(new URL("./fewest_writes.sql", import.meta.url)));
}

export interface StartFloor {
  /** 2,000 starts writing the rows only, no events, ms. */
  rowsOnlyMs: number;
  /** The same with both events through realtime.send, ms; undefined without it. */
  withRealtimeMs?: number;
}

/**
 * 2,000 minimal run starts of a one-step flow in one statement (fewest_writes.sql's start),
 * writing the rows start_flow leaves (the run, its step state, the task and its message) into
 * the engine's own tables and queue, so pgflow's indexes, constraints and foreign keys are paid
 * as start_flow pays them; in a database with realtime.send or without.
 */
export async function startFloor(url: string, runs = 2_000): Promise<StartFloor> {
  const sql = connect(url, { max: 1 });
  try {
    const [{ realtime }] = await sql`
      select to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null as realtime`;
    await sql`select pgflow.create_flow('floor_one')`;
    await sql`select pgflow.add_step('floor_one', 's')`;
    await installFewestWrites(sql);
    const timed = async (events: "none" | "realtime") => {
      // Warm-up: the function compiled and its statements planned.
      await sql`select bench_fewest_writes.start('floor_one', to_jsonb(i), ${events})
                from generate_series(1, 100) i`;
      const ms = await medianMs(
        START_ROUNDS,
        () =>
          sql`select bench_fewest_writes.start('floor_one', to_jsonb(i), ${events})
              from generate_series(1, ${runs}::int) i`,
      );
      return ms * 2_000 / runs;
    };
    const rowsOnlyMs = await timed("none");
    const withRealtimeMs = realtime ? await timed("realtime") : undefined;
    await sql`drop schema bench_fewest_writes cascade`;
    return { rowsOnlyMs, withRealtimeMs };
  } finally {
    await sql.end();
  }
}
