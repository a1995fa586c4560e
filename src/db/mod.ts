/** Typed access to the SQL core. */
export { connect, type ConnectOptions, type Sql } from "./connect.ts";
export * from "./types.ts";
export * from "./definitions.ts";
export * from "./runs.ts";
export * from "./run_operations.ts";
export * from "./queue.ts";
export * from "./tasks.ts";
export * from "./workers.ts";
export * from "./maintenance.ts";
export { applyMigrations, CORE_MIGRATIONS_DIR, type Migration, readMigrations } from "./migrate.ts";
