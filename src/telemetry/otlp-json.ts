/**
 * Spans in the OTLP/JSON encoding of `ExportTraceServiceRequest`
 * (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): ids as lowercase hex,
 * 64-bit integers (times, integer attributes) as decimal strings, enums as numbers.
 */
import type { AttributeValue, Attributes, Span } from "./span.ts";

type AnyValue = { stringValue: string } | { intValue: string } | { doubleValue: number } | { boolValue: boolean };

/** Epoch milliseconds (fractional) as a decimal string of nanoseconds. */
export function unixNanos(ms: number): string {
  let whole = Math.floor(ms);
  let frac = Math.round((ms - whole) * 1e6);
  if (frac >= 1e6) {
    whole += 1;
    frac -= 1e6;
  }
  return `${whole}${String(frac).padStart(6, "0")}`;
}

function anyValue(v: AttributeValue): AnyValue {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function keyValues(attrs: Attributes): Array<{ key: string; value: AnyValue }> {
  const out: Array<{ key: string; value: AnyValue }> = [];
  for (const key in attrs) {
    const v = attrs[key];
    if (v !== undefined) out.push({ key, value: anyValue(v) });
  }
  return out;
}

/** The request body for `POST {endpoint}/v1/traces`: one resource (the service), one scope. */
export function encodeTraces(resource: Attributes, scope: { name: string; version?: string }, spans: readonly Span[]): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: keyValues(resource) },
        scopeSpans: [
          {
            scope,
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: s.kind,
              startTimeUnixNano: unixNanos(s.startMs),
              endTimeUnixNano: unixNanos(s.endMs ?? s.startMs),
              attributes: keyValues(s.attributes),
              ...(s.events ? { events: s.events.map((e) => ({ timeUnixNano: unixNanos(e.timeMs), name: e.name, attributes: keyValues(e.attributes) })) } : {}),
              status: s.statusMessage ? { code: s.status, message: s.statusMessage } : { code: s.status },
            })),
          },
        ],
      },
    ],
  });
}
