/**
 * A stand-in for the two Supabase services the client's supabase-js transport talks to, over a
 * test database, so supabase-js itself can be tested without PostgREST or a Realtime server:
 *
 * - PostgREST: `POST /rest/v1/rpc/<fn>` with `Content-Profile: pgflow` for the two client
 *   functions (`start_flow_with_states`, `get_run_with_states`), called with named arguments as
 *   role `authenticated` (so the grants are exercised); errors as PostgREST shapes them.
 * - Realtime: `/realtime/v1/websocket`, the Phoenix protocol (vsn 2.0.0, JSON arrays) enough for
 *   joining, heartbeats and leaving, and broadcast-from-database: rows `realtime.send` writes to
 *   `realtime.messages` (Supabase's stand-in, /work/shared/fixtures/supabase_standins.sql) are
 *   announced by a trigger this module adds and pushed to the sockets that joined their topic.
 *
 * Not modelled: JWTs and RLS on realtime.messages (private channels), presence, postgres_changes,
 * binary frames, reconnects.
 */
import type { Sql } from "../../src/db/connect.ts";

/** Parameters and their types of the functions the stand-in serves (PostgREST: any). */
const RPC_FUNCTIONS: Record<string, Record<string, "text" | "jsonb" | "uuid">> = {
  start_flow_with_states: { flow_slug: "text", input: "jsonb", run_id: "uuid" },
  get_run_with_states: { run_id: "uuid" },
};

const NOTIFY_CHANNEL = "supabase_standin_realtime";

export interface SupabaseStandIn {
  /** `http://127.0.0.1:<port>`: give it to supabase-js's `createClient`. */
  url: string;
  /** RPC calls served, by function name. */
  rpcCalls: string[];
  /** Broadcasts pushed to sockets, as `<topic> <event>`. */
  broadcasts: string[];
  close(): Promise<void>;
}

/**
 * Loads Supabase's stand-ins into the database at `url` (psql: the file uses psql's
 * meta-commands), then adds the trigger that tells the Realtime stand-in about new messages.
 */
export async function loadSupabaseStandIns(url: string, sql: Sql): Promise<void> {
  const fixture = new URL("../../../shared/fixtures/supabase_standins.sql", import.meta.url);
  const path = await findFixture(fixture.pathname);
  const result = await new Deno.Command("psql", {
    args: ["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`psql -f ${path} failed:\n${new TextDecoder().decode(result.stderr)}`);
  }
  await sql.unsafe(`
    create function realtime.standin_announce() returns trigger language plpgsql as $$
    begin
      perform pg_notify('${NOTIFY_CHANNEL}', new.id::text);
      return null;
    end $$;
    create trigger standin_announce after insert on realtime.messages
      for each row execute function realtime.standin_announce();`);
}

/** Serves the stand-in on 127.0.0.1; `sql` connects as a role that may `set role`. */
export async function startSupabaseStandIn(sql: Sql): Promise<SupabaseStandIn> {
  const rpcCalls: string[] = [];
  const broadcasts: string[] = [];
  /** Sockets by the topics they joined (`realtime:<topic>`). */
  const joined = new Map<WebSocket, Set<string>>();

  const push = (socket: WebSocket, message: unknown[]) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };

  // One message at a time, in the order they were written, as Realtime delivers a topic's.
  let forwarding = Promise.resolve();
  const listening = await sql.listen(NOTIFY_CHANNEL, (id) => {
    forwarding = forwarding.then(() => forward(id)).catch((error) => {
      console.error("supabase stand-in: could not forward a message:", error);
    });
  });
  const forward = async (id: string) => {
    const [row] = await sql<{ topic: string; event: string; payload: unknown; private: boolean }[]>`
      select topic, event, payload, private from realtime.messages where id = ${id}::uuid`;
    if (!row || row.private) return; // private channels need RLS checks this stand-in lacks
    const topic = `realtime:${row.topic}`;
    for (const [socket, topics] of joined) {
      if (!topics.has(topic)) continue;
      broadcasts.push(`${row.topic} ${row.event}`);
      push(socket, [null, null, topic, "broadcast", {
        type: "broadcast",
        event: row.event,
        payload: row.payload,
      }]);
    }
  };

  const realtime = (request: Request): Response => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    joined.set(socket, new Set());
    socket.onmessage = (message) => {
      const [joinRef, ref, topic, event] = JSON.parse(String(message.data)) as [
        string | null,
        string | null,
        string,
        string,
        unknown,
      ];
      if (event === "phx_join") joined.get(socket)?.add(topic);
      if (event === "phx_leave") joined.get(socket)?.delete(topic);
      // Every push with a ref (join, leave, heartbeat, access_token) gets an ok reply.
      if (ref !== null) {
        push(socket, [joinRef, ref, topic, "phx_reply", { status: "ok", response: {} }]);
      }
    };
    socket.onclose = () => joined.delete(socket);
    return response;
  };

  const rest = async (request: Request, name: string): Promise<Response> => {
    const profile = request.headers.get("Content-Profile") ?? "public";
    if (profile !== "pgflow") {
      return postgrestError(406, "PGRST106", `The schema must be one of the following: pgflow`);
    }
    const params = RPC_FUNCTIONS[name];
    if (!params) {
      return postgrestError(404, "PGRST202", `Could not find the function pgflow.${name}`);
    }
    const body = await request.json() as Record<string, unknown>;
    const unknown = Object.keys(body).filter((key) => !(key in params));
    if (unknown.length > 0) {
      return postgrestError(
        404,
        "PGRST202",
        `Could not find the function pgflow.${name}(${Object.keys(body).join(", ")})`,
      );
    }
    const keys = Object.keys(params).filter((key) => key in body);
    const args = keys.map((key, i) =>
      params[key] === "jsonb"
        ? `${key} => ($${i + 1}::text)::jsonb`
        : `${key} => $${i + 1}::${params[key]}`
    );
    const values = keys.map((key) =>
      params[key] === "jsonb" ? JSON.stringify(body[key]) : (body[key] as string | null)
    );
    rpcCalls.push(name);
    try {
      const [row] = await sql.begin(async (tx) => {
        await tx`set local role authenticated`;
        return await tx.unsafe(`select pgflow.${name}(${args.join(", ")}) as result`, values);
      });
      return Response.json(row.result);
    } catch (error) {
      const e = error as { code?: string; message?: string; detail?: string; hint?: string };
      const status = e.code === "42501" ? 401 : e.code === "P0002" ? 404 : 400;
      return postgrestError(status, e.code ?? "", e.message ?? String(error), e.detail, e.hint);
    }
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/realtime/v1/websocket") return realtime(request);
    const rpc = /^\/rest\/v1\/rpc\/(\w+)$/.exec(path);
    if (rpc && request.method === "POST") return rest(request, rpc[1]);
    return new Response("not found", { status: 404 });
  });

  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    rpcCalls,
    broadcasts,
    async close() {
      await listening.unlisten();
      await forwarding;
      for (const socket of joined.keys()) socket.close();
      await server.shutdown();
    },
  };
}

function postgrestError(
  status: number,
  code: string,
  message: string,
  details?: string,
  hint?: string,
): Response {
  return Response.json({ code, message, details: details ?? null, hint: hint ?? null }, { status });
}

async function findFixture(path: string): Promise<string> {
  for (const candidate of [path, "/work/shared/fixtures/supabase_standins.sql"]) {
    try {
      await Deno.stat(candidate);
      return candidate;
    } catch {
      // try the next
    }
  }
  throw new Error(`Supabase stand-ins not found at ${path}`);
}
