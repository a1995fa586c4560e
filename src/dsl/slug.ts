/** Slug rules, the same as the SQL core's (both read src/limits.ts). */
import {
  MAX_FLOW_SLUG_LENGTH,
  MAX_STEP_SLUG_LENGTH,
  RESERVED_SLUG,
  SLUG_PATTERN,
} from "../limits.ts";

export { MAX_FLOW_SLUG_LENGTH, MAX_STEP_SLUG_LENGTH, RESERVED_SLUG };

const SLUG = new RegExp(SLUG_PATTERN);

/**
 * Why `slug` is not a valid step slug (or flow slug, with `kind` "flow": it also names
 * the flow's pgmq queue, so it is shorter), or `undefined` when it is.
 */
export function slugProblem(slug: unknown, kind: "flow" | "step" = "step"): string | undefined {
  if (typeof slug !== "string") return `slug must be a string, got ${describe(slug)}`;
  if (slug.length === 0) return "slug must not be empty";
  const max = kind === "flow" ? MAX_FLOW_SLUG_LENGTH : MAX_STEP_SLUG_LENGTH;
  if (slug.length > max) {
    return `${kind} slug must be at most ${max} characters, got ${slug.length}`;
  }
  if (!SLUG.test(slug)) {
    return `slug ${
      JSON.stringify(slug)
    } must start with a letter or underscore and contain only letters, digits and underscores`;
  }
  if (slug === RESERVED_SLUG) return `slug "${RESERVED_SLUG}" is reserved for the flow input`;
  return undefined;
}

export function isValidSlug(slug: unknown): slug is string {
  return slugProblem(slug) === undefined;
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return `a ${typeof value}`;
}
