/**
 * A service's tracer: starts spans, decides sampling, and hands ended spans to the exporter.
 *
 * Sampling is decided once per trace, at its root: an incoming `traceparent` is honoured
 * (its sampled flag decides; the span joins its trace), a new trace is sampled with
 * probability `ratio`, judged on the trace id so every service agrees. A trace that is not
 * sampled still carries its trace id to the services it calls, with the flag cleared, and
 * records nothing. Child spans are made only under a recorded span in the async context;
 * work outside any request (timers, health polling, start-up) makes none.
 */
import { activeContext, runInContext } from "./context.ts";
import { newSpanId, newTraceId } from "./ids.ts";
import { nowMs, Span, SpanKind, type Attributes } from "./span.ts";
import { parseTraceparent, type SpanContext } from "./trace-context.ts";

export interface SpanSink {
  add(span: Span): void;
}

export class Tracer {
  /** Trace ids whose last 8 hex digits (random in every W3C trace id) fall below this are sampled. */
  private readonly threshold: number;

  constructor(
    readonly service: string,
    private readonly sink: SpanSink,
    ratio = 1,
  ) {
    this.threshold = Math.round(Math.min(1, Math.max(0, ratio)) * 0x1_0000_0000);
  }

  private sampledRoot(traceId: string): boolean {
    return this.threshold >= 0x1_0000_0000 || parseInt(traceId.slice(-8), 16) < this.threshold;
  }

  private readonly ended = (span: Span): void => this.sink.add(span);

  /**
   * The server span of an incoming request: a child of `traceparent` when it is valid, else
   * the root of a new trace. Returns a `Span` when recorded, or a bare position otherwise.
   */
  startServer(name: string, traceparent: string | null, attributes: Attributes, startMs?: number): Span | SpanContext {
    const parent = parseTraceparent(traceparent);
    const traceId = parent?.traceId ?? newTraceId();
    const sampled = parent ? parent.sampled : this.sampledRoot(traceId);
    if (!sampled) return { traceId, spanId: newSpanId(), sampled: false };
    return new Span(name, SpanKind.SERVER, traceId, newSpanId(), parent?.spanId, attributes, this.ended, startMs);
  }

  /** A child of the active span, when there is a recorded one. */
  startChild(name: string, kind: SpanKind, attributes: Attributes, startMs?: number): Span | undefined {
    const parent = activeContext();
    if (!parent?.sampled) return undefined;
    return new Span(name, kind, parent.traceId, newSpanId(), parent.spanId, attributes, this.ended, startMs ?? nowMs());
  }

  /** The active span or trace position, to propagate to a callee. */
  active(): SpanContext | undefined {
    return activeContext();
  }

  /** Runs `fn` under `ctx`: spans started inside it are its children. */
  run<T>(ctx: SpanContext, fn: () => T): T {
    return runInContext(ctx, fn);
  }
}

/**
 * Runs `fn` inside a child span of the active recorded span, when there is one (a request
 * being traced); otherwise just runs it. For code that has no tracer of its own, such as the
 * keyring's JOSE operations: the span ends into the exporter of the request's tracer.
 */
export async function inChildSpan<T>(name: string, kind: SpanKind, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  const parent = activeContext();
  if (!(parent instanceof Span)) return fn();
  const span = parent.child(name, kind, attributes);
  try {
    return await fn();
  } catch (e) {
    span.recordError(e);
    throw e;
  } finally {
    span.end();
  }
}
