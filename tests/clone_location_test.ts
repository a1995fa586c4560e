/**
 * The front door works wherever a user clones: a copy of this checkout inside
 * a folder only its owner may enter (root's home, a `mktemp -d` folder) runs
 * `deno task demo` on its own embedded server. Under root the server runs as
 * OS user postgres, which cannot enter that folder.
 */
import assert from "node:assert/strict";

const CHECKOUT = new URL("../", import.meta.url).pathname;

async function checkoutFiles(): Promise<string[]> {
  const listed = await new Deno.Command("git", {
    args: ["ls-files", "-co", "--exclude-standard", "-z"],
    cwd: CHECKOUT,
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(listed.stdout).split("\0").filter(Boolean);
}

/** Copies the working tree (tracked and new files, without node_modules) under `dir`. */
async function copyCheckout(dir: string): Promise<void> {
  for (const file of await checkoutFiles()) {
    const target = `${dir}/${file}`;
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
    try {
      await Deno.copyFile(`${CHECKOUT}${file}`, target);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // deleted, not yet committed
    }
  }
}

Deno.test("deno task demo works from a clone inside a folder only its owner may enter", async () => {
  const privateDir = await Deno.makeTempDir({ prefix: "edgeflow-private-" });
  await Deno.chmod(privateDir, 0o700);
  const clone = `${privateDir}/edgeflow`;
  try {
    await copyCheckout(clone);
    // ../shared beside the clone, as in a real checkout next to it: the real pgmq is used.
    await Deno.symlink(new URL("../../shared", import.meta.url).pathname, `${privateDir}/shared`);
    const env: Record<string, string> = { PATH: Deno.env.get("PATH") ?? "" };
    for (const name of ["HOME", "DENO_DIR", "TMPDIR"]) {
      const value = Deno.env.get(name);
      if (value) env[name] = value;
    }
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["task", "demo", "--runs", "3"],
      cwd: clone,
      clearEnv: true,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, text);
    assert.match(text, /embedded PostgreSQL 17 started/);
    assert.match(text, /pgmq: extension/);
    assert.match(text, /3\/3 completed, 0 failed/);
    assert.doesNotMatch(text, /EPERM|Uncaught/);
  } finally {
    await Deno.remove(privateDir, { recursive: true });
  }
});
