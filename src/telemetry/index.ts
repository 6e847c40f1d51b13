/** Tracing: W3C Trace Context, a small span API over the async context, and an OTLP/HTTP JSON exporter. */
export { activeContext, runInContext } from "./context.ts";
export { createTracing, TelemetryConfig, type Tracing } from "./config.ts";
export { OtlpHttpExporter, type OtlpExporterOptions } from "./exporter.ts";
export { newSpanId, newTraceId } from "./ids.ts";
export { encodeTraces, unixNanos } from "./otlp-json.ts";
export { nowMs, Span, SpanKind, SpanStatus, type AttributeValue, type Attributes, type SpanEvent } from "./span.ts";
export { formatTraceparent, parseTraceparent, type SpanContext } from "./trace-context.ts";
export { inChildSpan, Tracer, type SpanSink } from "./tracer.ts";
