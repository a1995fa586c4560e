/** SQL literals for generated statements. Values come from validated flows, but quote anyway. */

/** A string literal; `E'...'` when it has backslashes so the result never depends on server settings. */
export function sqlString(value: string): string {
  if (value.includes("\0")) {
    throw new Error(`cannot put a NUL character in SQL text: ${JSON.stringify(value)}`);
  }
  const quoted = value.replaceAll("'", "''");
  return value.includes("\\") ? `E'${quoted.replaceAll("\\", "\\\\")}'` : `'${quoted}'`;
}

/** An integer literal; anything else is refused rather than written into SQL. */
export function sqlInteger(value: number): string {
  if (!Number.isSafeInteger(value)) throw new Error(`expected an integer, got ${value}`);
  return String(value);
}

/** A `text[]` literal. */
export function sqlTextArray(values: readonly string[]): string {
  return `ARRAY[${values.map(sqlString).join(", ")}]::text[]`;
}
