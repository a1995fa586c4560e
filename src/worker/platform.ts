/**
 * The worker's only contact with its host: environment variables, process signals, exit, the
 * terminal and the global event target. Deno (CLI and Supabase Edge Runtime) uses the `Deno`
 * namespace; Node 20+ uses `process`. Everything else the worker needs (fetch, Response, crypto,
 * timers, AbortController, performance) is a web standard both have.
 */

export type SignalName = "SIGINT" | "SIGTERM";

/** The part of Node's `process` the worker uses (typed here: no Node types in a Deno build). */
interface NodeProcess {
  env: Record<string, string | undefined>;
  exit(code: number): never;
  on(signal: string, listener: () => void): unknown;
  off(signal: string, listener: () => void): unknown;
  stdout?: { isTTY?: boolean };
  versions?: { node?: string };
}

/** The part of the `Deno` namespace the worker uses (typed here too: this also builds for Node). */
interface DenoNamespace {
  env: { get(name: string): string | undefined; toObject(): Record<string, string> };
  addSignalListener?(signal: SignalName, handler: () => void): void;
  removeSignalListener(signal: SignalName, handler: () => void): void;
  exit(code: number): never;
  stdout: { isTerminal(): boolean };
}

/** Deno's namespace, when this runs under Deno (or the Supabase Edge Runtime). */
function deno(): DenoNamespace | undefined {
  const candidate = (globalThis as { Deno?: DenoNamespace }).Deno;
  return typeof candidate?.env?.get === "function" ? candidate : undefined;
}

/** Node's `process`, when this runs under Node (and not under Deno, which also has one). */
function nodeProcess(): NodeProcess | undefined {
  if (deno()) return undefined;
  const candidate = (globalThis as { process?: NodeProcess }).process;
  return typeof candidate?.versions?.node === "string" ? candidate : undefined;
}

/** The process's environment; `{}` where it may not be read (no permission, a browser). */
export function platformEnv(): Record<string, string | undefined> {
  const denoNs = deno();
  if (denoNs) {
    try {
      return denoNs.env.toObject();
    } catch {
      return {}; // no env permission: only what the options give
    }
  }
  return { ...(nodeProcess()?.env ?? {}) };
}

/** One environment variable, or undefined where it may not be read. */
export function platformEnvVar(name: string): string | undefined {
  const denoNs = deno();
  if (denoNs) {
    try {
      return denoNs.env.get(name);
    } catch {
      return undefined;
    }
  }
  return nodeProcess()?.env[name];
}

/**
 * Calls `handler` when the process receives `signal`; returns the unsubscribe, or undefined where
 * the platform has no process signals (the edge runtime) or not this one (SIGTERM on Windows).
 */
export function onProcessSignal(signal: SignalName, handler: () => void): (() => void) | undefined {
  const denoNs = deno();
  if (denoNs) {
    if (typeof denoNs.addSignalListener !== "function") return undefined;
    try {
      denoNs.addSignalListener(signal, handler);
    } catch {
      return undefined;
    }
    return () => {
      try {
        denoNs.removeSignalListener(signal, handler);
      } catch {
        // Already gone.
      }
    };
  }
  const node = nodeProcess();
  if (!node) return undefined;
  node.on(signal, handler);
  return () => void node.off(signal, handler);
}

/** Ends the process with `code`. */
export function exitProcess(code: number): never {
  const denoNs = deno();
  if (denoNs) denoNs.exit(code);
  const node = nodeProcess();
  if (node) node.exit(code);
  throw new Error(`cannot exit with code ${code}: neither Deno nor Node`);
}

/** Whether stdout is a terminal (log lines are then coloured). */
export function stdoutIsTerminal(): boolean {
  const denoNs = deno();
  if (denoNs) {
    try {
      return denoNs.stdout.isTerminal();
    } catch {
      return false;
    }
  }
  return nodeProcess()?.stdout?.isTTY === true;
}

/**
 * `globalThis.addEventListener(type, listener)` where the global scope is an event target (Deno,
 * the edge runtime, browsers; not Node); returns the unsubscribe.
 */
export function onGlobalEvent(
  type: string,
  listener: (event: Event) => void,
): (() => void) | undefined {
  const target = globalThis as Partial<EventTarget>;
  if (typeof target.addEventListener !== "function") return undefined;
  target.addEventListener(type, listener);
  return () => target.removeEventListener?.(type, listener);
}
