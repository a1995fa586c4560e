/** Typed calls for defining flows: create_flow, add_step, is_valid_slug. */
import type { Sql } from "./connect.ts";
import type { FlowRow, StepRow, StepType } from "./types.ts";

export interface CreateFlowArgs {
  flowSlug: string;
  maxAttempts?: number;
  baseDelay?: number;
  timeout?: number;
}

export async function createFlow(sql: Sql, args: CreateFlowArgs): Promise<FlowRow> {
  const [row] = await sql<FlowRow[]>`
    select * from pgflow.create_flow(
      flow_slug => ${args.flowSlug},
      max_attempts => ${args.maxAttempts ?? 3},
      base_delay => ${args.baseDelay ?? 5},
      timeout => ${args.timeout ?? 60})`;
  return row;
}

export interface AddStepArgs {
  flowSlug: string;
  stepSlug: string;
  depsSlugs?: string[];
  maxAttempts?: number;
  baseDelay?: number;
  timeout?: number;
  startDelay?: number;
  stepType?: StepType;
}

export async function addStep(sql: Sql, args: AddStepArgs): Promise<StepRow> {
  const [row] = await sql<StepRow[]>`
    select * from pgflow.add_step(
      flow_slug => ${args.flowSlug},
      step_slug => ${args.stepSlug},
      deps_slugs => ${args.depsSlugs ?? []}::text[],
      max_attempts => ${args.maxAttempts ?? null}::int,
      base_delay => ${args.baseDelay ?? null}::int,
      timeout => ${args.timeout ?? null}::int,
      start_delay => ${args.startDelay ?? null}::int,
      step_type => ${args.stepType ?? "single"})`;
  return row;
}

export async function isValidSlug(sql: Sql, slug: string): Promise<boolean> {
  const [row] = await sql<{ valid: boolean }[]>`select pgflow.is_valid_slug(${slug}) as valid`;
  return row.valid;
}
