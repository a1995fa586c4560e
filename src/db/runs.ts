/** Typed calls for starting and reading runs. */
import type { Sql } from "./connect.ts";
import { toJsonText } from "./json.ts";
import { literal, oneTrip, type SqlLiteral } from "./one_trip.ts";
import type { RunRow, RunWithStates } from "./types.ts";

export interface StartFlowArgs {
  flowSlug: string;
  input: unknown;
  /** Choose the run id yourself (e.g. for idempotent starts). */
  runId?: string;
}

/** A run id the caller chose, or NULL: the SQL core picks one. */
function runIdLiteral(runId: string | undefined): SqlLiteral {
  return runId === undefined || runId === null
    ? literal.nullOf("uuid")
    : literal.uuid(runId, "run id");
}

export async function startFlow(sql: Sql, args: StartFlowArgs): Promise<RunRow> {
  const input = toJsonText(args.input, `input of flow "${args.flowSlug}"`);
  const [row] = await oneTrip(sql)<RunRow[]>`
    select * from pgflow.start_flow(
      flow_slug => ${literal.text(args.flowSlug, "flow slug")},
      input => ${literal.jsonb(input, "input")},
      run_id => ${runIdLiteral(args.runId)})`;
  return row;
}

export async function startFlowWithStates(sql: Sql, args: StartFlowArgs): Promise<RunWithStates> {
  const input = toJsonText(args.input, `input of flow "${args.flowSlug}"`);
  const [row] = await oneTrip(sql)<{ result: RunWithStates }[]>`
    select pgflow.start_flow_with_states(
      flow_slug => ${literal.text(args.flowSlug, "flow slug")},
      input => ${literal.jsonb(input, "input")},
      run_id => ${runIdLiteral(args.runId)}) as result`;
  return row.result;
}

export async function getRunWithStates(sql: Sql, runId: string): Promise<RunWithStates> {
  const [row] = await oneTrip(sql)<{ result: RunWithStates }[]>`
    select pgflow.get_run_with_states(${literal.uuid(runId, "run id")}) as result`;
  return row.result;
}
