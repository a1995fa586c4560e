/**
 * `deno task db`: starts the development database with the SQL core installed
 * and keeps it running until Ctrl-C.
 */
import { openDevDatabase } from "./dev_database.ts";
import { exitOnSetupError } from "./postgres_setup_error.ts";

const db = await exitOnSetupError(openDevDatabase);
console.log(
  `edgeflow dev database ready (pgmq: ${db.pgmq}; migrations applied now: ${db.applied.length})`,
);
console.log(`  url:  ${db.url}`);
console.log(`  psql: psql '${db.url}'`);
console.log(`  or:   deno task sql "select * from pgflow.flows"`);
console.log(`Ctrl-C stops it; the data stays in ${db.dataDir ?? "that server"}.`);

const stop = async () => {
  await db.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
// Keep the process alive while the server runs.
setInterval(() => {}, 1 << 30);
