/** Where the development database (`deno task db`) listens; no imports, so the CLI loads it cheaply. */
export const DEV_PORT = 54329;
export const DEV_URL = `postgres://postgres:postgres@127.0.0.1:${DEV_PORT}/postgres`;
