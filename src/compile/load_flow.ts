/** Imports a flow module and picks its flow. */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type AnyFlow, isFlow } from "../dsl/flow.ts";

/**
 * The flow exported by the module at `modulePath` (a file path or a URL): `exportName`
 * when given, else the default export when it is a flow, else the module's only exported
 * flow. Zero or several candidates are an error listing what was found.
 */
export async function loadFlow(modulePath: string, exportName?: string): Promise<AnyFlow> {
  const url = /^[a-z][a-z0-9+.-]*:/i.test(modulePath) && !/^[a-z]:[\\/]/i.test(modulePath)
    ? modulePath
    : pathToFileURL(resolve(modulePath)).href;
  const module: Record<string, unknown> = await import(url);

  if (exportName !== undefined) {
    const value = module[exportName];
    if (!isFlow(value)) {
      throw new Error(
        `${modulePath}: export "${exportName}" is ${
          value === undefined ? "missing" : "not a Flow"
        }`,
      );
    }
    return value;
  }
  if (isFlow(module.default)) return module.default;

  const flows = Object.entries(module).filter(([, value]) => isFlow(value));
  if (flows.length === 1) return flows[0][1] as AnyFlow;
  if (flows.length === 0) {
    throw new Error(
      `${modulePath}: no Flow exported (export one, e.g. \`export default new Flow(...)\`)`,
    );
  }
  const names = flows.map(([name]) => name).join(", ");
  throw new Error(
    `${modulePath}: several Flows exported (${names}); choose one with exportName / --export`,
  );
}
