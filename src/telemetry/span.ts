/**
 * A recorded span: a named, timed piece of work in a trace, with attributes, a status and
 * error events, in OpenTelemetry's model (kinds and status codes are OTLP's numbers).
 *
 * What goes in: names of operations, routes, tables, algorithms, status codes and error
 * codes. What never goes in: request or response bodies, headers, SQL parameters, tokens,
 * keys or plaintext; an error is recorded by its type and code, and by its message only
 * when it is an `AppError`, whose messages are written for clients.
 */
import { AppError } from "../service/errors.ts";
import type { SpanContext } from "./trace-context.ts";
import { newSpanId } from "./ids.ts";

export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
export type SpanKind = (typeof SpanKind)[keyof typeof SpanKind];

export const SpanStatus = { UNSET: 0, OK: 1, ERROR: 2 } as const;
export type SpanStatus = (typeof SpanStatus)[keyof typeof SpanStatus];

export type AttributeValue = string | number | boolean;
export type Attributes = Record<string, AttributeValue | undefined>;

export interface SpanEvent {
  name: string;
  timeMs: number;
  attributes: Attributes;
}

/** Wall-clock milliseconds since the epoch with sub-millisecond precision. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

export class Span implements SpanContext {
  readonly sampled = true;
  endMs?: number;
  status: SpanStatus = SpanStatus.UNSET;
  statusMessage?: string;
  events?: SpanEvent[];

  constructor(
    public name: string,
    readonly kind: SpanKind,
    readonly traceId: string,
    readonly spanId: string,
    readonly parentSpanId: string | undefined,
    readonly attributes: Attributes,
    private readonly onEnd: (span: Span) => void,
    readonly startMs: number = nowMs(),
  ) {}

  /** A child of this span that ends into the same exporter. */
  child(name: string, kind: SpanKind, attributes: Attributes): Span {
    return new Span(name, kind, this.traceId, newSpanId(), this.spanId, attributes, this.onEnd);
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    this.attributes[key] = value;
    return this;
  }

  setStatus(status: SpanStatus, message?: string): this {
    this.status = status;
    this.statusMessage = message;
    return this;
  }

  /** Marks the span failed and adds an `exception` event with the error's type and code. */
  recordError(err: unknown): this {
    const attributes: Attributes = {};
    let code: string | undefined;
    if (err instanceof AppError) {
      code = err.code;
      attributes["exception.type"] = "AppError";
      attributes["exception.message"] = err.message;
    } else if (err instanceof Error) {
      attributes["exception.type"] = err.name;
      const c = (err as { code?: unknown }).code;
      if (typeof c === "string") code = c;
    } else {
      attributes["exception.type"] = typeof err;
    }
    attributes["error.type"] = code;
    (this.events ??= []).push({ name: "exception", timeMs: nowMs(), attributes });
    return this.setStatus(SpanStatus.ERROR, code);
  }

  /** Ends the span (once) and hands it to the exporter. */
  end(endMs: number = nowMs()): void {
    if (this.endMs !== undefined) return;
    this.endMs = endMs;
    this.onEnd(this);
  }
}
