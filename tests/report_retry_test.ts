/** Which report failures are retried (a connection problem) and which are not (a refusal). */
import assert from "node:assert/strict";
import { isTransient } from "../src/worker/report_retry.ts";

Deno.test("connection problems are transient, refusals are not", () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });
  assert.ok(isTransient(withCode("write EPIPE", "EPIPE")));
  assert.ok(isTransient(withCode("connection closed", "CONNECTION_CLOSED")));
  assert.ok(isTransient(withCode("the database system is shutting down", "57P03")));
  assert.ok(isTransient(withCode("deadlock detected", "40P01")));
  assert.ok(isTransient(withCode("read ECONNRESET", "ECONNRESET")));
  assert.ok(!isTransient(withCode("the pool was closed", "CONNECTION_ENDED")));
  assert.ok(!isTransient(withCode("complete_task: run x does not exist", "P0002")));
  assert.ok(!isTransient(withCode("value too long", "22001")), "a SQLSTATE outside the classes");
  assert.ok(
    !isTransient(new Error("write EPIPE")),
    "no code: not known to be a connection problem",
  );
  assert.ok(!isTransient("EPIPE"));
});
