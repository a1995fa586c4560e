/**
 * A diamond (a -> b, a -> c, b + c -> d) driven through its five statements on one connection,
 * as an idle worker sends them, with no worker, LISTEN or handler in between: start_flow, the
 * claim of a, a's report claiming b and c, their report claiming d, d's report. `bench:ab` uses
 * it to compare engines' CPU; the benchmark times it after idle gaps, the engine's share of the
 * diamond latency, beside the same five statements writing only what a diamond run must leave
 * (fewest_writes.sql, one of the floors the benchmark prints).
 */
import type { Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import {
  completeTasks,
  completeTasksAndClaim,
  readAndStartTasks,
  type StartedTask,
} from "../src/db/tasks.ts";
import { installFewestWrites } from "./floors.ts";

/** Defines the diamond flow `slug` through the SQL API. */
export async function defineDiamond(sql: Sql, slug: string): Promise<void> {
  await sql`select pgflow.create_flow(${slug})`;
  await sql`select pgflow.add_step(${slug}, 'a')`;
  await sql`select pgflow.add_step(${slug}, 'b', array['a'])`;
  await sql`select pgflow.add_step(${slug}, 'c', array['a'])`;
  await sql`select pgflow.add_step(${slug}, 'd', array['b', 'c'])`;
}

/** The completion of a claimed task with `output`. */
export const completionOf = (started: StartedTask, output: unknown) => ({
  runId: started.task.run_id,
  stepSlug: started.task.step_slug,
  taskIndex: started.task.task_index,
  output,
});

/** One diamond run through its five statements. */
export async function driveDiamond(
  sql: Sql,
  claim: { flowSlug: string; workerId: string; vt: number; qty: number },
  input: number,
): Promise<void> {
  await startFlow(sql, { flowSlug: claim.flowSlug, input });
  const [a] = await readAndStartTasks(sql, claim);
  const level2 = await completeTasksAndClaim(sql, [completionOf(a, input)], claim);
  const level3 = await completeTasksAndClaim(
    sql,
    level2.claimed.map((t) => completionOf(t, 1)),
    claim,
  );
  await completeTasks(sql, level3.claimed.map((t) => completionOf(t, 2)));
}

/** The diamond flow whose runs the fewest-writes floor writes (bench/fewest_writes.sql). */
const FEWEST_WRITES_FLOW = "floor_diamond";

/** One diamond run through the floor's five statements. */
export async function driveFewestWrites(sql: Sql, workerId: string, input: number): Promise<void> {
  await sql`select bench_fewest_writes.start(${FEWEST_WRITES_FLOW}, ${input}::text::jsonb, 'notify')`;
  const [{ run }] = await sql<
    { run: string }[]
  >`select bench_fewest_writes.claim(${workerId}) as run`;
  await sql`select bench_fewest_writes.report(${run}, array['a'], array[${input}::text::jsonb],
                                              array['b', 'c'], ${workerId})`;
  await sql`select bench_fewest_writes.report(${run}, array['b', 'c'], array['1'::jsonb, '2'::jsonb],
                                              array['d'], ${workerId})`;
  await sql`select bench_fewest_writes.report(${run}, array['d'], array['3'::jsonb], null,
                                              ${workerId})`;
}

/**
 * Throws unless each of the floor's `runs` runs completed with d's output and left no message:
 * a floor that skipped a write would measure less than a diamond needs.
 */
export async function checkFewestWrites(sql: Sql, runs: number): Promise<void> {
  const [state] = await sql<{ completed: number; others: number; messages: number }[]>`
    select count(*) filter (where r.status = 'completed' and r.output = '{"d": 3}')::int as completed,
           count(*) filter (where r.status <> 'completed' or r.output <> '{"d": 3}')::int as others,
           (select count(*) from pgmq.q_floor_diamond)::int as messages
    from pgflow.runs r where r.flow_slug = ${FEWEST_WRITES_FLOW}`;
  if (state.completed !== runs || state.others !== 0 || state.messages !== 0) {
    throw new Error(
      `the fewest-writes floor left ${state.completed} of ${runs} runs completed, ` +
        `${state.others} in another state and ${state.messages} messages queued`,
    );
  }
}

/** Ms per diamond run, in ascending order: the engine's five statements and the floor's. */
export interface DiamondChainTimes {
  engine: number[];
  fewestWrites: number[];
}

/**
 * Ms per diamond through the engine's five statements and through the fewest writes a diamond
 * needs (floors.ts), alternately on one connection, each run after an idle gap of up to 100 ms
 * (as the latency measurement's runs arrive), so a slow spell of the machine slows both.
 */
export async function diamondChainTimes(sql: Sql, runs: number): Promise<DiamondChainTimes> {
  const slug = "bench_chain";
  await defineDiamond(sql, slug);
  await defineDiamond(sql, FEWEST_WRITES_FLOW);
  await installFewestWrites(sql);
  const workerId = crypto.randomUUID();
  const claim = { flowSlug: slug, workerId, vt: 30, qty: 10 };
  const drivers = {
    engine: (input: number) => driveDiamond(sql, claim, input),
    fewestWrites: (input: number) => driveFewestWrites(sql, workerId, input),
  };
  const warmUp = 10;
  for (let i = 0; i < warmUp; i++) {
    await drivers.engine(i);
    await drivers.fewestWrites(i);
  }
  const times: DiamondChainTimes = { engine: [], fewestWrites: [] };
  for (let i = 0; i < runs; i++) {
    const order = i % 2 ? ["engine", "fewestWrites"] as const : ["fewestWrites", "engine"] as const;
    for (const which of order) {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 100));
      const began = performance.now();
      await drivers[which](i);
      times[which].push(performance.now() - began);
    }
  }
  await checkFewestWrites(sql, warmUp + runs);
  return {
    engine: times.engine.sort((a, b) => a - b),
    fewestWrites: times.fewestWrites.sort((a, b) => a - b),
  };
}
