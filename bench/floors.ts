/**
 * What this machine allows, printed beside the targets it bounds: the shapes of two measurements
 * with the engine's own work taken out.
 *
 * - The latency chain: a diamond run is five serial commits between two notifications (the start,
 *   then the worker's claim and three reports). Here the client inserts a row and NOTIFYs; a
 *   listener makes four serial one-row commits and NOTIFYs back.
 * - A run's start: the rows a one-step run needs (run, step state, task, message) in the
 *   engine's own tables and queue, inserted by a PL/pgSQL function called once per run, 2,000
 *   times in one statement; once without events and once with its two events through
 *   `realtime.send`, as pgflow's contract sends them where Supabase Realtime exists.
 * - A diamond's fewest writes: the rows, messages and notifications a diamond run leaves in the
 *   engine's own tables and queue, written by five plain PL/pgSQL statements shaped like the
 *   engine's five (fewest_writes.sql), with none of its checks, locks, options or bookkeeping;
 *   driven and timed beside the engine's five statements in diamond_chain.ts.
 */
import { medianMs, START_ROUNDS } from "./percentiles.ts";
import { connect } from "../src/db/connect.ts";

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

export interface StartFloor {
  /** 2,000 starts writing the rows only, no events, ms. */
  rowsOnlyMs: number;
  /** The same with both events through realtime.send, ms; undefined without it. */
  withRealtimeMs?: number;
}

/**
 * 2,000 minimal run starts of a one-step flow in one statement, writing the rows start_flow
 * leaves (the run, its step state, the task and its message) into the engine's own tables and
 * queue, so pgflow's indexes, constraints and foreign keys are paid as start_flow pays them;
 * in a database with realtime.send or without.
 */
export async function startFloor(url: string, runs = 2_000): Promise<StartFloor> {
  const sql = connect(url, { max: 1 });
  try {
    const [{ realtime }] = await sql`
      select to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null as realtime`;
    await sql`select pgflow.create_flow('floor_one')`;
    await sql`select pgflow.add_step('floor_one', 's')`;
    await sql.unsafe(`
      create schema bench_floor;
      create function bench_floor.start(p_input jsonb, p_realtime boolean) returns uuid
      language plpgsql as $$
      declare
        v_run uuid := gen_random_uuid();
        v_now timestamptz := now();
        v_msg bigint;
      begin
        insert into pgflow.runs (run_id, flow_slug, input, remaining_steps, started_at)
        values (v_run, 'floor_one', p_input, 1, v_now);
        insert into pgflow.step_states (flow_slug, run_id, step_slug, remaining_deps, created_at,
                                        initial_tasks, status, started_at, remaining_tasks)
        values ('floor_one', v_run, 's', 0, v_now, 1, 'started', v_now, 1);
        insert into pgmq.q_floor_one (vt, message)
        values (v_now, jsonb_build_object('flow_slug', 'floor_one', 'run_id', v_run,
                                          'step_slug', 's', 'task_index', 0))
        returning msg_id into v_msg;
        insert into pgflow.step_tasks (flow_slug, run_id, step_slug, task_index, message_id, queued_at)
        values ('floor_one', v_run, 's', 0, v_msg, v_now);
        if p_realtime then
          perform realtime.send(jsonb_build_object('run_id', v_run), 'run:started',
                                'pgflow:run:' || v_run, false);
          perform realtime.send(jsonb_build_object('run_id', v_run), 'step:s:started',
                                'pgflow:run:' || v_run, false);
        end if;
        return v_run;
      end;
      $$;`);
    const timed = async (withRealtime: boolean) => {
      // Warm-up: the function compiled and its statements planned.
      await sql`select bench_floor.start(to_jsonb(i), ${withRealtime}) from generate_series(1, 100) i`;
      const ms = await medianMs(
        START_ROUNDS,
        () =>
          sql`select bench_floor.start(to_jsonb(i), ${withRealtime})
            from generate_series(1, ${runs}::int) i`,
      );
      return ms * 2_000 / runs;
    };
    const rowsOnlyMs = await timed(false);
    const withRealtimeMs = realtime ? await timed(true) : undefined;
    await sql`drop schema bench_floor cascade`;
    return { rowsOnlyMs, withRealtimeMs };
  } finally {
    await sql.end();
  }
}
