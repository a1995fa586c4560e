/**
 * `compileOnStartup: false` (pgflow: `compilation: false`): the flow is compiled by migrations,
 * so the worker neither compiles nor compares it; it only refuses to poll a flow that is missing.
 */
import type { Sql } from "../db/connect.ts";
import { flowExists } from "../db/definitions.ts";
import type { Logger } from "./logger.ts";

export async function expectCompiledFlow(flowSlug: string, sql: Sql, log: Logger): Promise<void> {
  if (!(await flowExists(sql, flowSlug))) {
    throw new Error(
      `flow "${flowSlug}" is not in the database and the worker does not compile it ` +
        `(compileOnStartup: false / compilation: false): apply the flow's migration, ` +
        `or let the worker compile it at startup`,
    );
  }
  log.debug("flow exists; startup compilation is off");
}
