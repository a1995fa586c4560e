/**
 * Finds the Supabase CLI (npm package supabase@2.117.0, which `.ci/run`
 * installs into .edgeflow/tools): $SUPABASE_CLI, then .edgeflow/tools, then PATH.
 */
export function findSupabaseCli(): string | undefined {
  const candidates = [
    Deno.env.get("SUPABASE_CLI"),
    new URL("../../.edgeflow/tools/node_modules/.bin/supabase", import.meta.url).pathname,
    ...(Deno.env.get("PATH") ?? "").split(":").map((dir) => `${dir}/supabase`),
  ];
  for (const path of candidates) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there; try the next
    }
  }
  return undefined;
}

export interface CliResult {
  code: number;
  output: string;
}

export async function runSupabase(cli: string, args: string[], cwd: string): Promise<CliResult> {
  const result = await new Deno.Command(cli, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DO_NOT_TRACK: "1", SUPABASE_TELEMETRY_DISABLED: "1" },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: result.code, output: decode(result.stdout) + decode(result.stderr) };
}
