/** A test OTLP/HTTP receiver: a plain Bun.serve that keeps every JSON body POSTed to /v1/traces. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, string | number | boolean>;
  status: { code: number; message?: string };
}

export interface OtlpReceiver {
  url: string;
  /** Every body received, as text. */
  bodies: string[];
  spans(): ReceivedSpan[];
  stop(): Promise<void>;
}

type KeyValue = { key: string; value: { stringValue?: string; intValue?: string; doubleValue?: number; boolValue?: boolean } };

const plain = (kvs: KeyValue[] = []) =>
  Object.fromEntries(kvs.map(({ key, value: v }) => [key, v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.doubleValue ?? v.boolValue!))]));

export function startOtlpReceiver(): OtlpReceiver {
  const bodies: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      if (req.method !== "POST" || new URL(req.url).pathname !== "/v1/traces") return new Response("no", { status: 404 });
      if (!req.headers.get("content-type")?.startsWith("application/json")) return new Response("json only", { status: 415 });
      bodies.push(await req.text());
      return Response.json({});
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    bodies,
    spans() {
      const out: ReceivedSpan[] = [];
      for (const body of bodies) {
        for (const rs of JSON.parse(body).resourceSpans) {
          const service = String(plain(rs.resource.attributes)["service.name"]);
          for (const ss of rs.scopeSpans) for (const s of ss.spans) out.push({ ...s, service, attributes: plain(s.attributes) });
        }
      }
      return out;
    },
    stop: () => server.stop(true),
  };
}

/** Polls `check` until it returns a value; fails after a deadline generous enough for a loaded machine. */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, deadlineMs = 60_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(100);
  }
}
