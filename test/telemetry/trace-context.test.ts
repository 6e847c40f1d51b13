/** W3C traceparent parsing and formatting, ids, and the OTLP/JSON encoding of spans. */
import { describe, expect, test } from "bun:test";
import { encodeTraces, formatTraceparent, newSpanId, newTraceId, parseTraceparent, Span, SpanKind, SpanStatus, unixNanos } from "../../src/telemetry/index.ts";
import { AppError } from "../../src/service/errors.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN = "00f067aa0ba902b7";

describe("traceparent", () => {
  test("a valid version-00 header, sampled or not", () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: true });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: false });
    // Other flag bits are kept out of the decision; only bit 0 is "sampled".
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-03`)?.sampled).toBe(true);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-02`)?.sampled).toBe(false);
  });

  test("format is the inverse of parse", () => {
    for (const header of [`00-${TRACE}-${SPAN}-01`, `00-${TRACE}-${SPAN}-00`]) expect(formatTraceparent(parseTraceparent(header)!)).toBe(header);
  });

  test("versions: ff is invalid, 00 must be exact, a later version may append fields", () => {
    expect(parseTraceparent(`ff-${TRACE}-${SPAN}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01-extra`)).toBeUndefined();
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-extra`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: true });
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: true });
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01x`)).toBeUndefined();
    expect(parseTraceparent(`0g-${TRACE}-${SPAN}-01`)).toBeUndefined();
  });

  test("all-zero ids, uppercase hex, wrong lengths and separators are refused", () => {
    expect(parseTraceparent(`00-${"0".repeat(32)}-${SPAN}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${TRACE}-${"0".repeat(16)}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${TRACE.toUpperCase()}-${SPAN}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${TRACE.slice(1)}-${SPAN}-01`)).toBeUndefined();
    expect(parseTraceparent(`00_${TRACE}_${SPAN}_01`)).toBeUndefined();
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-0z`)).toBeUndefined();
    expect(parseTraceparent("")).toBeUndefined();
    expect(parseTraceparent(null)).toBeUndefined();
    expect(parseTraceparent(undefined)).toBeUndefined();
  });

  test("new ids are lowercase hex of the right length, distinct and never zero", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      expect(t).toMatch(/^[0-9a-f]{32}$/);
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      ids.add(t);
    }
    expect(ids.size).toBe(2000);
  });
});

describe("OTLP/JSON", () => {
  test("nanosecond strings from fractional milliseconds", () => {
    expect(unixNanos(1700000000123.456789)).toMatch(/^1700000000123456\d{3}$/);
    expect(unixNanos(5)).toBe("5000000");
    expect(unixNanos(1.9999999)).toBe("2000000");
  });

  test("a span with attributes, an error event and a status", () => {
    const ended: Span[] = [];
    const span = new Span("GET /x", SpanKind.SERVER, TRACE, SPAN, "1111111111111111", { "http.request.method": "GET", "http.response.status_code": 503, ok: false, ratio: 0.5, none: undefined }, (s) => ended.push(s), 1000);
    span.recordError(new AppError("unavailable", "the database is busy"));
    span.end(1002.5);
    span.end(2000); // a second end changes nothing
    expect(ended).toHaveLength(1);
    const doc = JSON.parse(encodeTraces({ "service.name": "t" }, { name: "cryptoutil" }, ended));
    const s = doc.resourceSpans[0].scopeSpans[0].spans[0];
    expect(doc.resourceSpans[0].resource.attributes).toEqual([{ key: "service.name", value: { stringValue: "t" } }]);
    expect(s).toMatchObject({ traceId: TRACE, spanId: SPAN, parentSpanId: "1111111111111111", name: "GET /x", kind: 2, startTimeUnixNano: "1000000000", endTimeUnixNano: "1002500000" });
    expect(s.attributes).toEqual([
      { key: "http.request.method", value: { stringValue: "GET" } },
      { key: "http.response.status_code", value: { intValue: "503" } },
      { key: "ok", value: { boolValue: false } },
      { key: "ratio", value: { doubleValue: 0.5 } },
    ]);
    expect(s.status).toEqual({ code: SpanStatus.ERROR, message: "unavailable" });
    expect(s.events[0].name).toBe("exception");
  });

  test("errors other than AppError are recorded by type and code, never by message", () => {
    const ended: Span[] = [];
    const span = new Span("db select", SpanKind.INTERNAL, TRACE, SPAN, undefined, {}, (s) => ended.push(s));
    span.recordError(Object.assign(new Error("cannot reach libsql://db?authToken=secret-token"), { code: "SERVER_ERROR" }));
    span.end();
    const text = encodeTraces({}, { name: "cryptoutil" }, ended);
    expect(text).not.toContain("secret-token");
    expect(text).toContain("SERVER_ERROR");
  });
});
