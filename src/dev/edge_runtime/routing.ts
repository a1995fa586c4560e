/**
 * Supabase's URL layout: `/functions/v1/<name>[/rest]` goes to function `<name>`. Inside the
 * function the request URL's path is `/<name>[/rest]` (the `/functions/v1` prefix is the
 * gateway's), which is what routers such as Hono's `basePath('/<name>')` expect.
 */

export const FUNCTIONS_PREFIX = "/functions/v1/";

export interface FunctionRoute {
  name: string;
  /** The path the function sees: `/<name>[/rest]`. */
  functionPath: string;
}

/** The function a request path addresses, or `null` when it is not under /functions/v1/. */
export function routeOf(pathname: string): FunctionRoute | null {
  if (!pathname.startsWith(FUNCTIONS_PREFIX)) return null;
  const rest = pathname.slice(FUNCTIONS_PREFIX.length);
  const slash = rest.indexOf("/");
  let name: string;
  try {
    name = decodeURIComponent(slash === -1 ? rest : rest.slice(0, slash));
  } catch {
    return null; // Malformed percent-encoding.
  }
  if (name === "") return null;
  return { name, functionPath: "/" + rest };
}

/** The URL the function sees for a request to `url` routed as `route`. */
export function functionUrl(url: URL, route: FunctionRoute): string {
  return `${url.origin}${route.functionPath}${url.search}`;
}
