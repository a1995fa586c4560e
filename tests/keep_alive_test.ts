import assert from "node:assert/strict";
import { dbTest } from "./_support/db.ts";
import type { Sql } from "../src/db/connect.ts";
import { advanceSeconds } from "./_support/clock.ts";

async function ensureWorkers(
  sql: Sql,
): Promise<{ function_name: string; invoked: boolean; request_id: number | null }[]> {
  return [
    ...await sql<{ function_name: string; invoked: boolean; request_id: number | null }[]>`
    select * from pgflow.ensure_workers()`,
  ];
}

dbTest(
  "ensure_workers invokes tracked functions that have no live worker, debounced",
  async ({ sql }) => {
    const [tracked] = await sql`select * from pgflow.track_worker_function('analyze-worker')`;
    assert.equal(tracked.enabled, true);
    await sql`select pgflow.track_worker_function('analyze-worker')`; // idempotent
    await sql`select pgflow.track_worker_function('disabled-worker')`;
    await sql`update pgflow.worker_functions set enabled = false where function_name = 'disabled-worker'`;

    // Without pg_net nothing is sent: the due function is reported, not invoked.
    assert.deepEqual(await ensureWorkers(sql), [{
      function_name: "analyze-worker",
      invoked: false,
      request_id: null,
    }]);
    assert.deepEqual(await ensureWorkers(sql), [], "debounced");

    // The debounce is 6 s: 5 s later still debounced, at 6 s (no live worker) invoked again.
    await advanceSeconds(sql, 5);
    assert.deepEqual(await ensureWorkers(sql), [], "debounced 5 s after");
    await advanceSeconds(sql, 1);
    assert.equal((await ensureWorkers(sql)).length, 1);

    // A live worker stops the invocations, until its heartbeat is 15 s old (the default
    // heartbeat_timeout).
    const names = async () => (await ensureWorkers(sql)).map((r) => r.function_name);
    const worker = "33333333-3333-4333-8333-333333333333";
    await sql`select pgflow.register_worker(${worker}::uuid, 'analyze_website', 'analyze-worker')`;
    await advanceSeconds(sql, 14);
    assert.deepEqual(await names(), [], "a heartbeat 14 s old is live");
    await advanceSeconds(sql, 1);
    assert.deepEqual(await names(), ["analyze-worker"], "a heartbeat 15 s old is stale");

    // A deprecated worker with a fresh heartbeat does not count as live.
    await sql`select pgflow.worker_heartbeat(${worker}::uuid)`;
    await sql`select pgflow.deprecate_workers('analyze-worker')`;
    await advanceSeconds(sql, 6);
    assert.deepEqual(await names(), ["analyze-worker"], "deprecated");

    // Nor does a stopped one (a new worker; the deprecated one stays deprecated).
    const stopped = "44444444-4444-4444-8444-444444444444";
    await sql`select pgflow.register_worker(${stopped}::uuid, 'analyze_website', 'analyze-worker')`;
    await sql`select pgflow.mark_worker_stopped(${stopped}::uuid)`;
    await advanceSeconds(sql, 6);
    assert.deepEqual(await names(), ["analyze-worker"], "stopped");
    await assert.rejects(
      sql`select * from pgflow.ensure_workers('0 seconds')`,
      /ensure_workers: heartbeat_timeout must be a positive interval, got 00:00:00/,
    );
    await assert.rejects(
      sql`select pgflow.track_worker_function('')`,
      /function_name must be non-empty/,
    );
  },
);

dbTest(
  "with pg_net and Vault, ensure_workers posts to the function with the service key",
  async ({ sql }) => {
    // Stand-ins with the signatures of Supabase's pg_net and Vault, recording what they are asked.
    await sql.unsafe(`
    create schema net;
    create table net.requests (id bigserial primary key, url text, body jsonb, headers jsonb, timeout int);
    create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
                                  headers jsonb default '{}', timeout_milliseconds int default 5000)
    returns bigint language sql as
    $$ insert into net.requests (url, body, headers, timeout)
       values (url, body, headers, timeout_milliseconds) returning id $$;
    create schema vault;
    create table vault.decrypted_secrets (name text, decrypted_secret text);
    insert into vault.decrypted_secrets values
      ('edgeflow_functions_url', 'https://abc.supabase.co/functions/v1/'),
      ('edgeflow_service_role_key', 'service-key');`);
    await sql`select pgflow.track_worker_function('analyze-worker')`;
    const [invoked] = await ensureWorkers(sql);
    assert.equal(invoked.function_name, "analyze-worker");
    const [request] = await sql`select * from net.requests`;
    assert.equal(invoked.request_id, request.id);
    assert.equal(request.url, "https://abc.supabase.co/functions/v1/analyze-worker");
    assert.deepEqual(request.headers, {
      "Content-Type": "application/json",
      Authorization: "Bearer service-key",
    });
    const [{ local }] = await sql`select pgflow.is_local() as local`;
    assert.equal(local, false);
    await sql`update vault.decrypted_secrets set decrypted_secret = 'http://127.0.0.1:54321/functions/v1'
            where name = 'edgeflow_functions_url'`;
    const [{ again }] = await sql`select pgflow.is_local() as again`;
    assert.equal(again, true);
  },
);
