/** The page's three files, read once from beside this module (a checkout or a web address). */
import { readText } from "../db/read_text.ts";

const TYPES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
};

const cache = new Map<string, Promise<string>>();

export async function pageAsset(name: string): Promise<{ body: string; type: string }> {
  const type = TYPES[name];
  if (!type) throw new Error(`no page asset "${name}"`);
  let body = cache.get(name);
  if (!body) {
    body = readText(new URL(`page/${name}`, import.meta.url));
    cache.set(name, body);
    body.catch(() => cache.delete(name));
  }
  return { body: await body, type };
}
