/**
 * Database spans: `db <operation>` children of the request's span, for statements through
 * Kysely (its query log hook, which sees each statement's duration and error) and for the
 * direct reads and writes of embedded databases that bypass Kysely (precompiled.ts).
 *
 * Attributes: `db.system` (sqlite | postgresql), `db.operation.name` (the statement's first
 * keyword) and `db.collection.name` (the first table it names). Never the SQL text or its
 * parameters: values, including ciphertexts and hashes, stay out of traces.
 */
import type { LogEvent } from "kysely";
import { nowMs, SpanKind, type Tracer } from "../telemetry/index.ts";
import { libsqlCode } from "./database.ts";

export type DbSystem = "sqlite" | "postgresql";

const TABLE = /\b(?:from|into|update|table)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?/i;

function operationOf(sql: string): string {
  const s = sql.trimStart();
  const end = s.search(/[\s(;]/);
  return (end < 0 ? s : s.slice(0, end)).toLowerCase() || "statement";
}

function attributesOf(system: DbSystem, sql: string, operation: string) {
  return { "db.system": system, "db.operation.name": operation, "db.collection.name": TABLE.exec(sql)?.[1] };
}

/** A Kysely `log` hook that records each statement as a span of the active request. */
export function queryLogSpans(tracer: Tracer, system: DbSystem): (event: LogEvent) => void {
  return (event) => {
    const end = nowMs();
    const sql = event.query.sql;
    const operation = operationOf(sql);
    const span = tracer.startChild(`db ${operation}`, SpanKind.CLIENT, attributesOf(system, sql, operation), end - event.queryDurationMillis);
    if (!span) return;
    if (event.level === "error") span.recordError(Object.assign(new Error("storage error"), { name: "StorageError", code: libsqlCode(event.error) }));
    span.end(end);
  };
}

/** `run` (a direct read or write of `sql`) inside a span of the active request. */
export function tracedDirect<R>(tracer: Tracer, system: DbSystem, run: (sql: string, params: readonly unknown[]) => R): (sql: string, params: readonly unknown[]) => R {
  return (sql, params) => {
    const operation = operationOf(sql);
    const span = tracer.startChild(`db ${operation}`, SpanKind.CLIENT, attributesOf(system, sql, operation));
    if (!span) return run(sql, params);
    try {
      const out = run(sql, params);
      // A direct read answers undefined inside a Kysely transaction: the caller goes through
      // Kysely instead, whose statement has a span of its own.
      if (out !== undefined || operation !== "select") span.end();
      return out;
    } catch (e) {
      span.recordError(Object.assign(new Error("storage error"), { name: "StorageError", code: libsqlCode(e) }));
      span.end();
      throw e;
    }
  };
}
