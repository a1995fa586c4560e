/** Typed calls for defining flows: create_flow, add_step, is_valid_slug. */
import type { Sql } from "./connect.ts";
import type { FlowRow, Json, StepRow, StepType, WhenMode } from "./types.ts";

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
  /** The step runs only when its input contains this JSON object (pgflow 0.14). */
  requiredInputPattern?: { [key: string]: Json };
  /** The step runs only when its input does not contain this JSON object. */
  forbiddenInputPattern?: { [key: string]: Json };
  whenUnmet?: WhenMode;
  whenExhausted?: WhenMode;
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
      step_type => ${args.stepType ?? "single"},
      required_input_pattern => ${
    args.requiredInputPattern === undefined ? null : JSON.stringify(args.requiredInputPattern)
  }::text::jsonb,
      forbidden_input_pattern => ${
    args.forbiddenInputPattern === undefined ? null : JSON.stringify(args.forbiddenInputPattern)
  }::text::jsonb,
      when_unmet => ${args.whenUnmet ?? "skip"},
      when_exhausted => ${args.whenExhausted ?? "fail"})`;
  return row;
}

export async function isValidSlug(sql: Sql, slug: string): Promise<boolean> {
  const [row] = await sql<{ valid: boolean }[]>`select pgflow.is_valid_slug(${slug}) as valid`;
  return row.valid;
}

/** What `pgflow.ensure_flow_compiled` did with a flow's shape. */
export interface EnsureFlowCompiledResult {
  status: "compiled" | "verified" | "recompiled" | "mismatch";
  /** Human-readable differences between the code's shape and the database's. */
  differences: string[];
}

/**
 * Creates the flow from its shape when missing, verifies it when present, and on a
 * mismatch either lists the differences or (allowDataLoss) deletes and recreates it.
 */
export async function ensureFlowCompiled(
  sql: Sql,
  args: { flowSlug: string; shape: unknown; allowDataLoss?: boolean },
): Promise<EnsureFlowCompiledResult> {
  const shape = JSON.stringify(args.shape);
  const [row] = await sql<{ result: EnsureFlowCompiledResult }[]>`
    select pgflow.ensure_flow_compiled(
      flow_slug => ${args.flowSlug},
      shape => (${shape}::text)::jsonb,
      allow_data_loss => ${args.allowDataLoss ?? false}) as result`;
  return row.result;
}

/** Deletes a flow with all its runs and its queue. Irreversible. */
export async function deleteFlowAndData(sql: Sql, flowSlug: string): Promise<void> {
  await sql`select pgflow.delete_flow_and_data(${flowSlug})`;
}

/** Whether `pgflow.flows` has a flow with this slug (the worker connects as the owner). */
export async function flowExists(sql: Sql, flowSlug: string): Promise<boolean> {
  const rows = await sql`select 1 from pgflow.flows where flow_slug = ${flowSlug}`;
  return rows.length > 0;
}
