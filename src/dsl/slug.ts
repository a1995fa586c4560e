/** Slug rules, kept identical to the SQL core's `pgflow.is_valid_slug`. */

export const MAX_SLUG_LENGTH = 128;

/** The key under which a step's input carries the flow input; no step may use it. */
export const RESERVED_SLUG = "run";

const SLUG_PATTERN = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Why `slug` is not a valid flow or step slug, or `undefined` when it is. */
export function slugProblem(slug: unknown): string | undefined {
  if (typeof slug !== "string") return `slug must be a string, got ${describe(slug)}`;
  if (slug.length === 0) return "slug must not be empty";
  if (slug.length > MAX_SLUG_LENGTH) {
    return `slug must be at most ${MAX_SLUG_LENGTH} characters, got ${slug.length}`;
  }
  if (!SLUG_PATTERN.test(slug)) {
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
