/**
 * Live progress of a run: follows its realtime events (LISTEN on
 * pgflow:run:<id>) and re-reads its state, printing one line per change, until
 * the run completes or fails.
 */
import type { Sql } from "../db/connect.ts";
import { getRunWithStates } from "../db/runs.ts";
import type { RunWithStates } from "../db/types.ts";

export function describeRun(state: RunWithStates): string {
  const steps = state.steps.map((step) => {
    const tasks = step.initial_tasks !== null && step.initial_tasks > 1
      ? ` ${
        step.initial_tasks - (step.remaining_tasks ?? step.initial_tasks)
      }/${step.initial_tasks}`
      : "";
    return `${step.step_slug}:${step.status}${tasks}`;
  });
  return `run ${state.run.run_id} ${state.run.status} [${steps.join(" ")}]`;
}

/** Prints the run's state on every change; resolves with the final state. */
export async function followRun(
  sql: Sql,
  listener: Sql,
  runId: string,
  print: (line: string) => void,
  timeoutMs = 10 * 60_000,
): Promise<RunWithStates> {
  let wake: () => void = () => {};
  const subscription = await listener.listen(`pgflow:run:${runId}`, () => wake());
  const deadline = Date.now() + timeoutMs;
  let last = "";
  try {
    while (true) {
      const state = await getRunWithStates(sql, runId);
      const line = describeRun(state);
      if (line !== last) print(line);
      last = line;
      if (state.run.status !== "started") return state;
      if (Date.now() > deadline) {
        throw new Error(`run ${runId} still ${state.run.status} after ${timeoutMs} ms`);
      }
      // An event wakes us at once; the timer covers servers where notifications are lost.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    await subscription.unlisten();
  }
}
