/**
 * What an edge function loads: the worker never pulls in development tools
 * (embedded PostgreSQL, local edge runtime, compat queue, demo) nor the
 * compiler, and the public entry never pulls in development tools.
 */
import assert from "node:assert/strict";

async function localModules(entry: string): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    modules: { specifier: string }[];
  };
  return graph.modules.map((m) => m.specifier).filter((s) => s.includes("/src/"))
    .map((s) => s.slice(s.indexOf("/src/") + 1));
}

Deno.test("the worker loads neither development tools nor the compiler", async () => {
  const modules = await localModules("../src/worker/mod.ts");
  assert.ok(modules.includes("src/worker/worker.ts"));
  assert.deepEqual(modules.filter((m) => /^src\/(dev|compile|cli|inspector)\//.test(m)), []);
});

Deno.test("the public entry (what `edgeflow` resolves to) loads no development tools", async () => {
  const modules = await localModules("../src/mod.ts");
  assert.deepEqual(modules.filter((m) => /^src\/(dev|cli|inspector)\//.test(m)), []);
});

Deno.test("the CLI loads the embedded server only when it needs the dev database", async () => {
  const modules = await localModules("../src/cli/main.ts");
  // Static imports only: deno info lists dynamic imports too, so check the import statements.
  const text = await Deno.readTextFile(new URL("../src/cli/main.ts", import.meta.url));
  const staticImports = [...text.matchAll(/^import .* from "(.+)";$/gm)].map((m) => m[1]);
  assert.ok(
    staticImports.every((path) =>
      !path.includes("/dev/dev_database") && !path.includes("/inspector/")
    ),
    staticImports.join(),
  );
  assert.ok(modules.includes("src/cli/main.ts"));
});
