/**
 * A diamond (a -> b, a -> c, b + c -> d) driven through its five statements on one connection,
 * as an idle worker sends them, with no worker, LISTEN or handler in between: start_flow, the
 * claim of a, a's report claiming b and c, their report claiming d, d's report. `bench:ab` uses
 * it to compare engines' CPU; the benchmark times it after idle gaps, the engine's share of the
 * diamond latency.
 */
import type { Sql } from "../src/db/connect.ts";
import { startFlow } from "../src/db/runs.ts";
import {
  completeTasks,
  completeTasksAndClaim,
  readAndStartTasks,
  type StartedTask,
} from "../src/db/tasks.ts";

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

/**
 * Ms per diamond through its five statements, each run after an idle gap of up to 100 ms (as
 * the latency measurement's runs arrive), in ascending order.
 */
export async function diamondChainTimes(sql: Sql, runs: number): Promise<number[]> {
  const slug = "bench_chain";
  await defineDiamond(sql, slug);
  const claim = { flowSlug: slug, workerId: crypto.randomUUID(), vt: 30, qty: 10 };
  for (let i = 0; i < 10; i++) await driveDiamond(sql, claim, i); // warm-up
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 100));
    const began = performance.now();
    await driveDiamond(sql, claim, i);
    times.push(performance.now() - began);
  }
  return times.sort((a, b) => a - b);
}
