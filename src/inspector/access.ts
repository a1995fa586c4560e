/**
 * Who may use the inspector. On a loopback address anyone on this machine may, as with
 * `deno task db`; anywhere else every request needs the token (query `token`, header
 * `Authorization: Bearer <token>`, or the cookie the page sets). Tokens are compared in
 * constant time. Two checks hold on loopback too: the Host header must name the server (a
 * web page cannot reach it through DNS rebinding), and a request that changes state must come
 * from the inspector's own page (a custom header and a same-origin Origin), so other sites
 * cannot cancel runs with a cross-site form.
 */
import { timingSafeEqual } from "node:crypto";

export const TOKEN_COOKIE = "edgeflow_inspector_token";
export const PAGE_HEADER = "x-edgeflow-inspector";

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A random token of 32 url-safe characters. */
export function generateToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Constant-time comparison: both sides are hashed first, so their lengths do not leak either. */
export async function tokensMatch(given: string, expected: string): Promise<boolean> {
  return timingSafeEqual(await digest(given), await digest(expected));
}

/** The token a request carries, if any. */
export function requestToken(request: Request): string | undefined {
  const fromQuery = new URL(request.url).searchParams.get("token");
  if (fromQuery) return fromQuery;
  const authorization = request.headers.get("authorization");
  if (authorization?.startsWith("Bearer ")) return authorization.slice("Bearer ".length);
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === TOKEN_COOKIE) return decodeURIComponent(value.join("="));
  }
  return undefined;
}

export interface AccessRules {
  /** Required on every request when set. */
  token?: string;
  /** Host header values this server answers to; undefined accepts any (a wildcard bind). */
  hosts?: Set<string>;
}

/** Why a request is refused (status and message), or undefined when it may go on. */
export async function refusal(
  request: Request,
  rules: AccessRules,
): Promise<{ status: number; message: string } | undefined> {
  const host = request.headers.get("host") ?? "";
  if (rules.hosts && !rules.hosts.has(host.toLowerCase())) {
    return { status: 421, message: `this inspector does not answer to host "${host}"` };
  }
  if (rules.token !== undefined) {
    const given = requestToken(request);
    if (given === undefined || !(await tokensMatch(given, rules.token))) {
      return {
        status: 401,
        message: "a valid token is required (open the URL the inspector printed)",
      };
    }
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    const origin = request.headers.get("origin");
    if (
      request.headers.get(PAGE_HEADER) !== "1" || (origin !== null && new URL(origin).host !== host)
    ) {
      return { status: 403, message: "state changes are accepted from the inspector's page only" };
    }
  }
  return undefined;
}

/** Host header values a server bound to `host:port` answers to. */
export function allowedHosts(host: string, port: number): Set<string> | undefined {
  if (host === "0.0.0.0" || host === "::" || host === "[::]") return undefined;
  const names = isLoopback(host) ? [...LOOPBACK_NAMES, host] : [host];
  return new Set(
    names.filter((name) => name !== "::1").map((name) => `${name}:${port}`.toLowerCase()),
  );
}
