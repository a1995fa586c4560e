/**
 * One line per event. On a terminal: time, level, message and dim `key=value` fields. Elsewhere
 * (Supabase's log drain, files, CI): plain `level=info msg="..." key=value ...`, one line each.
 */
import { stdoutIsTerminal } from "./platform.ts";

export type LogLevel = "error" | "warn" | "info" | "debug";

export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

/** Fields every line may carry; `durationMs` is printed as `duration`. */
export interface LogFields {
  worker?: string;
  flow?: string;
  queue?: string;
  step?: string;
  run?: string;
  task?: number;
  msg_id?: number;
  attempt?: number;
  durationMs?: number;
  error?: string;
  [key: string]: string | number | boolean | null | undefined;
}

/** What a custom `logSink` receives for each line. */
export interface LogRecord {
  time: Date;
  level: LogLevel;
  msg: string;
  fields: LogFields;
  /** The line as the default sink would print it. */
  line: string;
}

export type LogSink = (record: LogRecord) => void;

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export class Logger {
  readonly level: LogLevel;
  readonly #base: LogFields;
  readonly #sink: LogSink;
  readonly #pretty: boolean;

  constructor(
    options: { level: LogLevel; fields?: LogFields; sink?: LogSink; pretty?: boolean },
  ) {
    this.level = options.level;
    this.#base = options.fields ?? {};
    this.#pretty = options.pretty ?? stdoutIsTerminal();
    this.#sink = options.sink ?? consoleSink;
  }

  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger {
    return new Logger({
      level: this.level,
      fields: { ...this.#base, ...fields },
      sink: this.#sink,
      pretty: this.#pretty,
    });
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] <= RANK[this.level];
  }

  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    this.#log("debug", msg, fields);
  }

  #log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (RANK[level] > RANK[this.level]) return;
    const all = fields ? { ...this.#base, ...fields } : this.#base;
    const time = new Date();
    const line = this.#pretty ? prettyLine(time, level, msg, all) : plainLine(level, msg, all);
    try {
      this.#sink({ time, level, msg, fields: all, line });
    } catch {
      // A broken sink must not break the worker.
    }
  }
}

function consoleSink(record: LogRecord): void {
  const write = record.level === "error"
    ? console.error
    : record.level === "warn"
    ? console.warn
    : record.level === "info"
    ? console.info
    : console.debug;
  write(record.line);
}

function entries(fields: LogFields): [string, string][] {
  const out: [string, string][] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (key === "durationMs") out.push(["duration", `${round(value as number)}ms`]);
    else out.push([key, String(value)]);
  }
  return out;
}

function round(ms: number): number {
  return ms >= 100 ? Math.round(ms) : Math.round(ms * 10) / 10;
}

function quote(value: string): string {
  return value === "" || /[\s"=\\]/.test(value) ? JSON.stringify(value) : value;
}

/** `level=info msg="task completed" worker=... duration=3.2ms` */
export function plainLine(level: LogLevel, msg: string, fields: LogFields): string {
  const parts = [`level=${level}`, `msg=${quote(msg)}`];
  for (const [key, value] of entries(fields)) parts.push(`${key}=${quote(value)}`);
  return parts.join(" ");
}

const COLOR: Record<LogLevel, string> = {
  error: "\x1b[31m",
  warn: "\x1b[33m",
  info: "\x1b[36m",
  debug: "\x1b[90m",
};

/** `12:03:04.567 INFO  task completed  worker=1a2b3c4d flow=f step=s run=9e8d7c6b duration=3.2ms` */
export function prettyLine(time: Date, level: LogLevel, msg: string, fields: LogFields): string {
  const clock = time.toTimeString().slice(0, 8) + "." +
    String(time.getMilliseconds()).padStart(3, "0");
  const shown = entries(fields).map(([key, value]) =>
    `${key}=${(key === "worker" || key === "run") && value.length > 8 ? value.slice(0, 8) : value}`
  );
  const tail = shown.length ? `  \x1b[2m${shown.join(" ")}\x1b[0m` : "";
  return `\x1b[2m${clock}\x1b[0m ${COLOR[level]}${
    level.toUpperCase().padEnd(5)
  }\x1b[0m ${msg}${tail}`;
}
