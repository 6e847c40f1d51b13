/**
 * The tracer and the exporter in-process: sampling, parents from the async context, crypto
 * spans from the dispatcher, and an exporter whose collector is down or hangs, which drops
 * and counts spans without ever making `add` wait.
 */
import { describe, expect, test } from "bun:test";
import { OtlpHttpExporter, Span, SpanKind, Tracer, type SpanSink } from "../../src/telemetry/index.ts";
import { createDispatcher, createWasmProvider, createWebCryptoProvider } from "../../src/crypto/index.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

function collecting(): SpanSink & { spans: Span[] } {
  const spans: Span[] = [];
  return { spans, add: (s) => void spans.push(s) };
}

describe("tracer", () => {
  test("children follow the active span across awaits and timers; none outside a request", async () => {
    const sink = collecting();
    const tracer = new Tracer("t", sink);
    expect(tracer.startChild("db select", SpanKind.CLIENT, {})).toBeUndefined();
    const server = tracer.startServer("GET", null, {}) as Span;
    expect(server).toBeInstanceOf(Span);
    expect(server.parentSpanId).toBeUndefined();
    await tracer.run(server, async () => {
      await Bun.sleep(1);
      tracer.startChild("a", SpanKind.INTERNAL, {})!.end();
      await new Promise<void>((r) => setTimeout(() => (tracer.startChild("b", SpanKind.INTERNAL, {})!.end(), r()), 1));
    });
    server.end();
    expect(sink.spans.map((s) => s.name)).toEqual(["a", "b", "GET"]);
    for (const s of sink.spans.slice(0, 2)) {
      expect(s.traceId).toBe(server.traceId);
      expect(s.parentSpanId).toBe(server.spanId);
    }
  });

  test("sampling: an incoming flag decides; a new trace follows the ratio; unsampled traces still carry their id", () => {
    const sink = collecting();
    const never = new Tracer("t", sink, 0);
    const root = never.startServer("GET", null, {});
    expect(root).not.toBeInstanceOf(Span);
    expect(root.sampled).toBe(false);
    expect(root.traceId).toMatch(/^[0-9a-f]{32}$/);
    never.run(root, () => expect(never.startChild("db", SpanKind.CLIENT, {})).toBeUndefined());
    // The caller sampled: recorded even at ratio 0, in the caller's trace.
    const joined = never.startServer("GET", `00-${TRACE}-00f067aa0ba902b7-01`, {}) as Span;
    expect(joined).toBeInstanceOf(Span);
    expect(joined.traceId).toBe(TRACE);
    expect(joined.parentSpanId).toBe("00f067aa0ba902b7");
    // The caller did not sample: not recorded even at ratio 1.
    const always = new Tracer("t", sink, 1);
    expect(always.startServer("GET", `00-${TRACE}-00f067aa0ba902b7-00`, {})).not.toBeInstanceOf(Span);
    // An invalid header starts a new trace.
    const fresh = always.startServer("GET", `00-${"0".repeat(32)}-00f067aa0ba902b7-01`, {}) as Span;
    expect(fresh.traceId).not.toBe("0".repeat(32));
    expect(fresh.parentSpanId).toBeUndefined();
    // A ratio between: about that share of new traces.
    const half = new Tracer("t", sink, 0.5);
    let sampled = 0;
    for (let i = 0; i < 4000; i++) if (half.startServer("GET", null, {}).sampled) sampled++;
    expect(sampled).toBeGreaterThan(1600);
    expect(sampled).toBeLessThan(2400);
  });

  test("the dispatcher's crypto spans name the operation, algorithm and provider, never key material", async () => {
    const sink = collecting();
    const tracer = new Tracer("t", sink);
    const dispatcher = createDispatcher({ providers: [createWasmProvider(), createWebCryptoProvider()], tracer });
    const key = await dispatcher.generateAesKey(256); // outside a request: no span
    expect(sink.spans).toEqual([]);
    const server = tracer.startServer("POST", null, {}) as Span;
    const iv = new Uint8Array(12).fill(7);
    await tracer.run(server, async () => {
      await dispatcher.aesGcmEncrypt(key, iv, new TextEncoder().encode("plaintext here"));
      await dispatcher.digest("SHA-384", new Uint8Array(10));
      await expect(dispatcher.aesGcmEncrypt(key, new Uint8Array(3), new Uint8Array(1))).rejects.toThrow();
    });
    const [enc, digest, failed] = sink.spans;
    expect(enc!.name).toBe("crypto aesGcmEncrypt");
    expect(enc!.parentSpanId).toBe(server.spanId);
    expect(enc!.attributes).toMatchObject({ "crypto.operation": "aesGcmEncrypt", "crypto.algorithm": "AES-256-GCM", "crypto.key.location": "raw" });
    expect(["wasm", "webcrypto"]).toContain(enc!.attributes["crypto.provider"] as string);
    expect(digest!.attributes["crypto.algorithm"]).toBe("SHA-384");
    expect(failed!.status).toBe(2);
    const material = Buffer.from((key as { material: Uint8Array }).material);
    const text = JSON.stringify(sink.spans);
    for (const form of ["hex", "base64", "base64url"] as const) expect(text).not.toContain(material.toString(form));
    expect(text).not.toContain("plaintext here");
  });
});

describe("exporter", () => {
  const span = (tracer: Tracer) => tracer.startServer("GET", null, {}) as Span;

  test("collector down: batches are dropped and counted, add never waits", async () => {
    let calls = 0;
    const exporter = new OtlpHttpExporter({
      endpoint: "http://collector.invalid",
      resource: { "service.name": "t" },
      batchSize: 4,
      maxQueue: 8,
      fetch: async () => {
        calls++;
        throw new TypeError("connection refused");
      },
    });
    const tracer = new Tracer("t", exporter);
    for (let i = 0; i < 20; i++) span(tracer).end();
    // The queue holds 8; the other 12 were dropped at once.
    expect(exporter.queued).toBe(8);
    expect(exporter.dropped).toBe(12);
    await exporter.flush();
    expect(calls).toBeGreaterThanOrEqual(1);
    await exporter.shutdown(1000);
    expect(exporter.dropped).toBe(20);
    expect(exporter.exported).toBe(0);
    expect(exporter.metrics("t")).toContain('telemetry_spans_dropped_total{service="t"} 20');
  });

  test("collector hanging: one export in flight, the queue stays bounded, shutdown gives up at its deadline", async () => {
    const pending: Array<() => void> = [];
    const exporter = new OtlpHttpExporter({
      endpoint: "http://collector.invalid",
      resource: {},
      batchSize: 4,
      maxQueue: 8,
      fetch: (_url, init) =>
        new Promise<Response>((_resolve, reject) => {
          pending.push(() => reject(new Error("aborted")));
          init.signal?.addEventListener("abort", () => reject(init.signal!.reason));
        }),
    });
    const tracer = new Tracer("t", exporter);
    for (let i = 0; i < 4; i++) span(tracer).end();
    void exporter.flush(); // takes the 4 and hangs
    for (let i = 0; i < 100; i++) span(tracer).end();
    expect(exporter.queued).toBe(8);
    expect(exporter.dropped).toBe(92);
    expect(pending).toHaveLength(1);
    await exporter.shutdown(200);
    expect(exporter.queued).toBe(0);
    for (const p of pending) p();
  });

  test("a batch the collector accepts is counted as exported, as OTLP JSON at /v1/traces", async () => {
    const seen: Array<{ url: string; body: string; type: string | null }> = [];
    const exporter = new OtlpHttpExporter({
      endpoint: "http://collector.example/otlp/",
      resource: { "service.name": "t" },
      fetch: async (url, init) => {
        seen.push({ url, body: String(init.body), type: new Headers(init.headers).get("content-type") });
        return new Response("{}");
      },
    });
    const tracer = new Tracer("t", exporter);
    for (let i = 0; i < 3; i++) span(tracer).end();
    await exporter.shutdown();
    expect(exporter.exported).toBe(3);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe("http://collector.example/otlp/v1/traces");
    expect(seen[0]!.type).toBe("application/json");
    expect(JSON.parse(seen[0]!.body).resourceSpans[0].scopeSpans[0].spans).toHaveLength(3);
  });
});
