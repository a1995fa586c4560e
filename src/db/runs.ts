/** Typed calls for starting and reading runs. */
import type { Sql } from "./connect.ts";
import { toJsonText } from "./json.ts";
import type { RunRow, RunWithStates } from "./types.ts";

export interface StartFlowArgs {
  flowSlug: string;
  input: unknown;
  /** Choose the run id yourself (e.g. for idempotent starts). */
  runId?: string;
}

export async function startFlow(sql: Sql, args: StartFlowArgs): Promise<RunRow> {
  const input = toJsonText(args.input, `input of flow "${args.flowSlug}"`);
  const [row] = await sql<RunRow[]>`
    select * from pgflow.start_flow(
      flow_slug => ${args.flowSlug},
      input => (${input}::text)::jsonb,
      run_id => ${args.runId ?? null}::uuid)`;
  return row;
}

export async function startFlowWithStates(sql: Sql, args: StartFlowArgs): Promise<RunWithStates> {
  const input = toJsonText(args.input, `input of flow "${args.flowSlug}"`);
  const [row] = await sql<{ result: RunWithStates }[]>`
    select pgflow.start_flow_with_states(
      flow_slug => ${args.flowSlug},
      input => (${input}::text)::jsonb,
      run_id => ${args.runId ?? null}::uuid) as result`;
  return row.result;
}

export async function getRunWithStates(sql: Sql, runId: string): Promise<RunWithStates> {
  const [row] = await sql<{ result: RunWithStates }[]>`
    select pgflow.get_run_with_states(${runId}::uuid) as result`;
  return row.result;
}
