/**
 * Structured JSON logs, one object per line.
 *
 * Guarantee: fields whose names look like secrets (key, secret, password, token,
 * authorization, cookie, pin, plaintext, ...) are replaced by "[redacted]" at any
 * depth, and byte arrays are never printed, so a careless call cannot leak key
 * material. Messages themselves must not embed secrets.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

const SECRET_NAME = /(pass(word)?|secret|token|authorization|cookie|pin|private|plaintext|unseal|^key$|_key$|keys?_?material|credential|otp|code_verifier)/i;

function redact(value: unknown, depth = 0): unknown {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (value instanceof Error) return { name: value.name, message: value.message, code: (value as { code?: unknown }).code };
  if (depth > 6 || typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map((x) => redact(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_NAME.test(k) ? "[redacted]" : redact(v, depth + 1);
  return out;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  enabled(level: LogLevel): boolean;
}

export type LogSink = (line: string) => void;

const stdoutSink: LogSink = (line) => {
  process.stdout.write(line + "\n");
};

/** Creates a logger writing JSON lines to `sink` (stdout by default). */
export function createLogger(opts: { level: LogLevel; service: string; sink?: LogSink; base?: Record<string, unknown> }): Logger {
  const min = RANK[opts.level];
  const sink = opts.sink ?? stdoutSink;
  const base = { service: opts.service, ...opts.base };
  const write = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < min) return;
    const rec = { time: new Date().toISOString(), level, msg, ...base, ...(fields ? (redact(fields) as object) : {}) };
    sink(JSON.stringify(rec));
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger({ ...opts, base: { ...opts.base, ...(redact(fields) as object) } }),
    enabled: (level) => RANK[level] >= min,
  };
}
