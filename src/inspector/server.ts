/**
 * The inspector's HTTP server: the page, a small JSON API over the pgflow tables, and
 * server-sent events. Bound to 127.0.0.1 by default; see access.ts for the token rule.
 */
import { connect, type Sql } from "../db/connect.ts";
import { QUEUE_CHANNEL_PREFIX, SLUG_PATTERN } from "../limits.ts";
import { allowedHosts, generateToken, isLoopback, refusal, TOKEN_COOKIE } from "./access.ts";
import { EventHub } from "./events.ts";
import { cancelRun, restartRun, resumeRun } from "../db/run_operations.ts";
import { layoutFlow } from "./layout.ts";
import { pageAsset } from "./page_assets.ts";
import {
  eventsGoToRealtime,
  getFlow,
  getRunDetail,
  listFlows,
  listRuns,
  type RunCursor,
} from "./queries.ts";
import { EventStreams } from "./sse.ts";

export interface InspectorOptions {
  /** The database to inspect. */
  dbUrl: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 54330; 0 picks a free port. */
  port?: number;
  /** Required on every request; generated when the host is not loopback and none is given. */
  token?: string;
}

export interface Inspector {
  /** The page's address (with the token when one is required). */
  url: string;
  token?: string;
  close(): Promise<void>;
}

export const DEFAULT_PORT = 54330;
const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SLUG = new RegExp(SLUG_PATTERN);
const STATUS = /^[a-z]{1,20}$/;
/** Channels one event stream may listen to: a page's runs and flows. */
const MAX_CHANNELS = 200;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export async function startInspector(options: InspectorOptions): Promise<Inspector> {
  const host = options.host ?? "127.0.0.1";
  const token = options.token ?? (isLoopback(host) ? undefined : generateToken());
  const sql = connect(options.dbUrl, { max: 4, applicationName: "edgeflow inspector" });
  const listener = connect(options.dbUrl, { max: 1, applicationName: "edgeflow inspector" });
  const streams = new EventStreams(new EventHub(listener));
  let rules = { token, hosts: undefined as Set<string> | undefined };
  const stopping = new AbortController();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    // Fails early, with the database's own message, when the URL or the schema is wrong.
    await sql`select 1 from pgflow.flows limit 1`.catch((error: Error) => {
      const where = new URL(options.dbUrl);
      where.password = "";
      throw new Error(`cannot read pgflow.flows at ${where.href}: ${error.message}`);
    });
    server = Deno.serve({
      hostname: host,
      port: options.port ?? DEFAULT_PORT,
      signal: stopping.signal,
      onListen: () => {},
    }, async (request) => {
      const refused = await refusal(request, rules);
      if (refused) return json({ error: refused.message }, refused.status);
      try {
        return await route(request, sql, streams, token);
      } catch (error) {
        if (error instanceof HttpError) return json({ error: error.message }, error.status);
        return json({ error: error instanceof Error ? error.message : String(error) }, 500);
      }
    });
  } catch (error) {
    await Promise.all([sql.end({ timeout: 1 }), listener.end({ timeout: 1 })]);
    throw error;
  }
  const port = server.addr.port;
  rules = { token, hosts: allowedHosts(host, port) };
  const shownHost = host.includes(":") ? `[${host}]` : host;
  const base = `http://${shownHost === "0.0.0.0" ? "127.0.0.1" : shownHost}:${port}/`;
  return {
    url: token === undefined ? base : `${base}?token=${encodeURIComponent(token)}`,
    token,
    async close() {
      streams.closeAll();
      stopping.abort();
      await server.finished;
      await Promise.all([sql.end({ timeout: 1 }), listener.end({ timeout: 1 })]);
    },
  };
}

async function route(
  request: Request,
  sql: Sql,
  streams: EventStreams,
  token: string | undefined,
): Promise<Response> {
  const url = new URL(request.url);
  const path = url.pathname;
  if (request.method === "GET") {
    if (path === "/") {
      const response = await asset("index.html");
      // The page's own requests (and its EventSource, which cannot send headers) carry the
      // token as a cookie from here on.
      if (token !== undefined) {
        response.headers.set(
          "set-cookie",
          `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`,
        );
      }
      return response;
    }
    if (path === "/app.js" || path === "/style.css") return await asset(path.slice(1));
    if (path === "/api/info") {
      return json({ live: (await eventsGoToRealtime(sql)) ? "polling" : "notify" });
    }
    if (path === "/api/flows") {
      const flows = await listFlows(sql);
      return json(flows.map((flow) => ({ ...flow, layout: layoutFlow(flow.steps) })));
    }
    const flowMatch = /^\/api\/flows\/([^/]+)$/.exec(path);
    if (flowMatch) {
      const slug = checkSlug(decodeURIComponent(flowMatch[1]), "flow");
      const flow = await getFlow(sql, slug);
      if (!flow) throw new HttpError(404, `no flow "${slug}"`);
      return json({ ...flow, layout: layoutFlow(flow.steps) });
    }
    if (path === "/api/runs") return json(await listRuns(sql, runPageQuery(url.searchParams)));
    const runMatch = /^\/api\/runs\/([^/]+)$/.exec(path);
    if (runMatch) {
      const runId = checkRunId(decodeURIComponent(runMatch[1]));
      const detail = await getRunDetail(sql, runId);
      if (!detail) throw new HttpError(404, `no run ${runId}`);
      return json({ ...detail, layout: layoutFlow(detail.steps) });
    }
    if (path === "/api/events") {
      return streams.open(eventChannels(url.searchParams));
    }
  }
  const operation = /^\/api\/runs\/([^/]+)\/(cancel|resume|restart)$/.exec(path);
  if (request.method === "POST" && operation) {
    const runId = checkRunId(decodeURIComponent(operation[1]));
    try {
      const run = operation[2] === "cancel"
        ? await cancelRun(sql, { runId, reason: "cancelled from the inspector" })
        : operation[2] === "resume"
        ? await resumeRun(sql, runId)
        : await restartRun(sql, runId);
      return json(run);
    } catch (error) {
      throw engineRefusal(error) ?? error;
    }
  }
  throw new HttpError(404, `no such page: ${request.method} ${path}`);
}

/** The engine's own refusals (no such run, a run in the wrong state) as client errors. */
function engineRefusal(error: unknown): HttpError | undefined {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === "P0002") return new HttpError(404, message); // no_data_found
  if (code === "55000" || code === "22023") return new HttpError(409, message);
  return undefined;
}

async function asset(name: string): Promise<Response> {
  const { body, type } = await pageAsset(name);
  return new Response(body, { headers: { "content-type": type, "cache-control": "no-store" } });
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function checkRunId(text: string): string {
  if (!RUN_ID.test(text)) throw new HttpError(400, `"${text}" is not a run id (a UUID)`);
  return text.toLowerCase();
}

function checkSlug(text: string, what: string): string {
  if (!SLUG.test(text)) throw new HttpError(400, `"${text}" is not a ${what} slug`);
  return text;
}

function runPageQuery(params: URLSearchParams) {
  const flow = params.get("flow") || undefined;
  const status = params.get("status") || undefined;
  if (status !== undefined && !STATUS.test(status)) {
    throw new HttpError(400, `"${status}" is not a run status`);
  }
  const limitText = params.get("limit") ?? "50";
  const limit = Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
    throw new HttpError(400, `limit must be an integer from 1 to 500, got "${limitText}"`);
  }
  const before = params.get("before");
  const after = params.get("after");
  if (before && after) throw new HttpError(400, "give before or after, not both");
  return {
    flow: flow === undefined ? undefined : checkSlug(flow, "flow"),
    status,
    before: before ? parseCursor(before, "before") : undefined,
    after: after ? parseCursor(after, "after") : undefined,
    limit,
  };
}

/** A cursor is `<started_at ISO>~<run id>`, as the page gets it from a RunPage. */
function parseCursor(text: string, name: string): RunCursor {
  const [startedAt, runId, ...rest] = text.split("~");
  if (
    rest.length > 0 || !runId || !RUN_ID.test(runId) ||
    !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$/.test(startedAt)
  ) {
    throw new HttpError(400, `${name} must be "<started_at>~<run id>", got "${text}"`);
  }
  return { startedAt, runId };
}

function eventChannels(params: URLSearchParams): string[] {
  const channels = [
    ...params.getAll("run").map((id) => `pgflow:run:${checkRunId(id)}`),
    ...params.getAll("flow").map((slug) => `${QUEUE_CHANNEL_PREFIX}${checkSlug(slug, "flow")}`),
  ];
  if (channels.length === 0) throw new HttpError(400, "events need at least one run or flow");
  if (channels.length > MAX_CHANNELS) {
    throw new HttpError(400, `events take at most ${MAX_CHANNELS} runs and flows`);
  }
  return channels;
}
