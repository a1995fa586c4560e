/**
 * Reads a text file next to edgeflow's own modules, whether edgeflow runs from
 * a checkout (file: URL) or from a web address (`deno run <url>/src/cli/main.ts`).
 */
export async function readText(url: URL): Promise<string> {
  if (url.protocol === "file:") return await Deno.readTextFile(url);
  const response = await fetch(url);
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`cannot read ${url.href}: HTTP ${response.status}`);
  }
  return await response.text();
}
