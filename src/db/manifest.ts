/**
 * `migrations/manifest.json`: the core's migrations in order, each with its
 * SHA-256 and whether it was released (released migrations never change).
 * Read over http(s), where folders cannot be listed, and by the release check.
 */
export interface ManifestEntry {
  /** `<14-digit version>_edgeflow_<NNN>_<name>.sql` */
  file: string;
  /** SHA-256 of the file's text, hex. */
  sha256: string;
  released: boolean;
}

export interface Manifest {
  migrations: ManifestEntry[];
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Parses a manifest, naming what is wrong with a malformed one. */
export function parseManifest(text: string, source: string): Manifest {
  const data: unknown = JSON.parse(text);
  const entries = (data as { migrations?: unknown })?.migrations;
  const valid = Array.isArray(entries) &&
    entries.every((entry) =>
      typeof entry?.file === "string" && typeof entry?.sha256 === "string" &&
      typeof entry?.released === "boolean"
    );
  if (!valid) {
    throw new Error(`${source} must be {"migrations": [{"file", "sha256", "released"}, ...]}`);
  }
  return data as Manifest;
}
