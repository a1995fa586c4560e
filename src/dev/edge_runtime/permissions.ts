/**
 * What a function instance may do. By default an instance inherits the runtime's permissions
 * (the runtime runs with -A), which works under any `deno run`/`deno test`.
 *
 * `SUPABASE_LIKE_PERMISSIONS` narrows an instance to roughly what Supabase allows: network,
 * reading files, importing modules, and writing only under /tmp; no subprocesses and no FFI.
 * Giving a Worker its own permissions is an unstable Deno API: the process must run with
 * `--unstable-worker-options` (or `"unstable": ["worker-options"]` in deno.json), otherwise
 * Deno ends the process when such a Worker is created. `checkIsolatePermissions` creates one
 * at startup so that happens at once, with Deno's message naming the flag, rather than at the
 * first request.
 *
 * Environment variables need no permission inside an instance: `Deno.env` there is the
 * instance's own map (see isolate_env.ts).
 */

export type IsolatePermissions = "inherit" | Deno.PermissionOptionsObject;

function writableTempDirs(): string[] {
  const dirs = new Set(["/tmp"]);
  const tmpdir = Deno.env.get("TMPDIR");
  if (tmpdir) dirs.add(tmpdir);
  return [...dirs];
}

export const SUPABASE_LIKE_PERMISSIONS: Deno.PermissionOptionsObject = {
  net: true,
  read: true,
  import: true,
  env: true,
  sys: true,
  write: writableTempDirs(),
  run: false,
  ffi: false,
};

/** The `deno` part of the Worker options for these permissions. */
export function workerDenoOptions(
  permissions: IsolatePermissions,
): { permissions: Deno.PermissionOptions } | undefined {
  return permissions === "inherit" ? undefined : { permissions };
}

/**
 * Creates (and ends) one Worker with `permissions`, so a missing `--unstable-worker-options`
 * stops the process now rather than at the first request.
 */
export async function checkIsolatePermissions(permissions: IsolatePermissions): Promise<void> {
  if (permissions === "inherit") return;
  const worker = new Worker("data:text/javascript,postMessage(0)", {
    type: "module",
    deno: workerDenoOptions(permissions),
  });
  try {
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`a sandboxed isolate failed to start: ${event.message}`));
      };
    });
  } finally {
    worker.terminate();
  }
}
