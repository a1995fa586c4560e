/**
 * Runs inside an instance. Gives the instance its own environment: `Deno.env` and Node's
 * `process.env` are replaced by views of one map holding the variables the runtime passed
 * (its configured env plus `SB_EXECUTION_ID`). A Worker's real environment is the whole
 * process's, shared by every instance, so it cannot carry a per-instance value such as
 * `SB_EXECUTION_ID`; setting a variable inside an instance changes only that instance.
 */
import process from "node:process";

export function installInstanceEnv(vars: Record<string, string>): void {
  const store = new Map(Object.entries(vars));

  const env: Deno.Env = {
    get: (key) => store.get(key),
    set: (key, value) => void store.set(key, String(value)),
    delete: (key) => void store.delete(key),
    has: (key) => store.has(key),
    toObject: () => Object.fromEntries(store),
  };
  Object.defineProperty(Deno, "env", {
    value: env,
    enumerable: true,
    configurable: true,
    writable: false,
  });

  const processEnv = new Proxy<Record<string, string>>({}, {
    get: (_target, key) => typeof key === "string" ? store.get(key) : undefined,
    set: (_target, key, value) => {
      if (typeof key === "string") store.set(key, String(value));
      return true;
    },
    has: (_target, key) => typeof key === "string" && store.has(key),
    deleteProperty: (_target, key) => {
      if (typeof key === "string") store.delete(key);
      return true;
    },
    ownKeys: () => [...store.keys()],
    getOwnPropertyDescriptor: (_target, key) => {
      if (typeof key !== "string" || !store.has(key)) return undefined;
      return { value: store.get(key), writable: true, enumerable: true, configurable: true };
    },
  });
  Object.defineProperty(process, "env", {
    value: processEnv,
    enumerable: true,
    configurable: true,
    writable: true,
  });
}
