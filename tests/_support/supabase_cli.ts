/**
 * The real Supabase CLI, pinned: npm package supabase@2.117.0 (a Node bundle
 * that Deno runs; `deno task setup` installs it with the other npm packages).
 * $SUPABASE_CLI, when set, names another CLI binary to use instead.
 */
export const SUPABASE_CLI_PACKAGE = "npm:supabase@2.117.0";

export interface CliResult {
  code: number;
  output: string;
}

function command(args: string[]): [string, string[]] {
  const binary = Deno.env.get("SUPABASE_CLI");
  return binary ? [binary, args] : [Deno.execPath(), ["run", "-A", SUPABASE_CLI_PACKAGE, ...args]];
}

export async function runSupabase(args: string[], cwd: string): Promise<CliResult> {
  const [program, programArgs] = command(args);
  const result = await new Deno.Command(program, {
    args: programArgs,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DO_NOT_TRACK: "1", SUPABASE_TELEMETRY_DISABLED: "1" },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: result.code, output: decode(result.stdout) + decode(result.stderr) };
}
