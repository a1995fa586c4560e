/**
 * A throwaway server does not outlive its process. A test file run with plain `deno test` (not
 * through `deno task test`) starts one in tests/_support/db.ts and stops it in an `unload`
 * handler, which cannot wait for a promise: the stop must be synchronous, or the server keeps
 * running and its folder stays in /tmp. Here a child process does the same, then exits.
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";

const EMBEDDED = new URL("../src/dev/embedded_postgres.ts", import.meta.url).href;

Deno.test("a process that ends stops its throwaway server and deletes its folder", async () => {
  const script = `
    import { startThrowawayPostgres } from ${JSON.stringify(EMBEDDED)};
    const server = await startThrowawayPostgres("unload-check");
    globalThis.addEventListener("unload", () => server.stopNow());
    console.log(JSON.stringify({ dataDir: server.dataDir, port: server.port }));
  `;
  const child = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(child.success, new TextDecoder().decode(child.stderr));
  const { dataDir, port } = JSON.parse(new TextDecoder().decode(child.stdout)) as {
    dataDir: string;
    port: number;
  };

  await assert.rejects(Deno.stat(dirname(dataDir)), Deno.errors.NotFound, "the folder is gone");
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
    "nothing listens on the server's port",
  );
});
