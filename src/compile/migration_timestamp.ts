/** The `<14-digit UTC timestamp>` prefix of Supabase migration file names. */

export function formatMigrationTimestamp(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new Error("invalid date for a migration timestamp");
  return date.toISOString().replace(/\.\d+Z$/, "").replace(/\D/g, "");
}

/** The timestamp of a migration file name, or `undefined` when it has none. */
export function parseMigrationTimestamp(fileName: string): Date | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})_/.exec(fileName);
  if (!match) return undefined;
  const [y, mo, d, h, mi, s] = match.slice(1).map(Number);
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}
