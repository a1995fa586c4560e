/**
 * Reading a dotenv file such as `supabase/functions/.env` (what `supabase functions serve`
 * reads): `KEY=value` lines, optional `export ` prefix, `#` comments, values in double quotes
 * (with \n, \r, \t, \", \\ escapes), single quotes (literal) or bare (trimmed, ` #` starts a
 * comment). A missing file is an empty environment.
 */

const LINE = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$/;
const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\" };

export function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*(#|$)/.test(lines[i])) continue;
    const match = LINE.exec(lines[i]);
    if (!match) throw new SyntaxError(`line ${i + 1}: expected KEY=value, got: ${lines[i]}`);
    const [, key] = match;
    let value = match[2];
    if (value.startsWith('"')) {
      // A double-quoted value may span lines.
      while (closingQuote(value) === -1 && i + 1 < lines.length) value += "\n" + lines[++i];
      const end = closingQuote(value);
      if (end === -1) throw new SyntaxError(`line ${i + 1}: unterminated quote in ${key}`);
      value = value.slice(1, end).replace(/\\(.)/g, (all, c: string) => ESCAPES[c] ?? all);
    } else if (value.startsWith("'")) {
      const end = value.indexOf("'", 1);
      if (end === -1) throw new SyntaxError(`line ${i + 1}: unterminated quote in ${key}`);
      value = value.slice(1, end);
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    env[key] = value;
  }
  return env;
}

function closingQuote(value: string): number {
  for (let i = 1; i < value.length; i++) {
    if (value[i] === "\\") i++;
    else if (value[i] === '"') return i;
  }
  return -1;
}

export async function readEnvFile(path: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw error;
  }
  try {
    return parseEnv(text);
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}
