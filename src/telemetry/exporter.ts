/**
 * A batching OTLP/HTTP exporter (JSON encoding): ended spans wait in a bounded queue and
 * are POSTed to `{endpoint}/v1/traces` every `intervalMs`, or as soon as `batchSize` are
 * waiting, one request at a time.
 *
 * It never slows a request: `add` only appends to an array (or drops the span when the
 * queue is full), encoding and sending happen later on the event loop, and a collector
 * that is down or slow costs dropped spans, counted in `dropped`, never waiting. A batch
 * that fails to send is dropped too (no retries: the next batch is as good a probe).
 */
import { encodeTraces } from "./otlp-json.ts";
import type { Attributes, Span } from "./span.ts";
import type { SpanSink } from "./tracer.ts";
import { runtime } from "../runtime/index.ts";

export interface OtlpExporterOptions {
  /** The collector's base URL; spans go to `{endpoint}/v1/traces`. */
  endpoint: string;
  /** PEM bundle that verifies an https collector (Bun's fetch option); unset: the trust store. */
  caPem?: string;
  /** Resource attributes, e.g. `service.name`. */
  resource: Attributes;
  intervalMs?: number;
  batchSize?: number;
  /** Spans held at most while waiting to be sent; beyond it new spans are dropped. */
  maxQueue?: number;
  /** Deadline of one export request. */
  timeoutMs?: number;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
}

const SCOPE = { name: "cryptoutil" };

export class OtlpHttpExporter implements SpanSink {
  /** Spans accepted by the collector. */
  exported = 0;
  /** Spans dropped: queue full, or their batch could not be sent. */
  dropped = 0;
  private queue: Span[] = [];
  private sending?: Promise<void>;
  private soon = false;
  private readonly url: string;
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly maxQueue: number;
  private readonly timeoutMs: number;
  private readonly fetchImpl: (url: string, init: RequestInit) => Promise<Response>;
  private timer?: ReturnType<typeof setInterval>;

  constructor(private readonly opts: OtlpExporterOptions) {
    this.url = `${opts.endpoint.replace(/\/+$/, "")}/v1/traces`;
    this.intervalMs = opts.intervalMs ?? 1000;
    this.batchSize = opts.batchSize ?? 512;
    this.maxQueue = opts.maxQueue ?? 4 * this.batchSize;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    const ca = opts.caPem;
    this.fetchImpl = opts.fetch ?? ((url, init) => runtime.fetch(url, init, { ca }));
  }

  /** Starts the periodic flush; the timer never keeps the process alive. */
  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Spans waiting to be sent. */
  get queued(): number {
    return this.queue.length;
  }

  add(span: Span): void {
    if (this.queue.length >= this.maxQueue) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.batchSize && !this.soon) {
      this.soon = true;
      setTimeout(() => {
        this.soon = false;
        void this.flush();
      }, 0);
    }
  }

  /** Sends what is queued, a batch at a time; resolves when the queue is empty or a send failed. */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    if (this.queue.length === 0) return Promise.resolve();
    this.sending = (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.batchSize);
        if (!(await this.send(batch))) break;
      }
    })().finally(() => (this.sending = undefined));
    return this.sending;
  }

  private async send(batch: Span[]): Promise<boolean> {
    try {
      const res = await this.fetchImpl(this.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: encodeTraces(this.opts.resource, SCOPE, batch),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) {
        this.exported += batch.length;
        return true;
      }
    } catch {
      // Down, refused, timed out: counted below, never thrown at a request.
    }
    this.dropped += batch.length;
    return false;
  }

  /** Stops the timer and sends what is left, waiting at most `deadlineMs`. */
  async shutdown(deadlineMs = 5000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const end = Date.now() + deadlineMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, deadlineMs)));
    const drain = (async () => {
      while ((this.queue.length > 0 || this.sending) && Date.now() < end) {
        const before = this.dropped;
        await this.flush();
        if (this.dropped !== before) break; // the collector is not answering: stop trying
      }
    })();
    await Promise.race([drain, deadline]);
    clearTimeout(timer);
    this.dropped += this.queue.length;
    this.queue = [];
  }

  /** Prometheus exposition lines of the exporter's counters. */
  metrics(service: string): string[] {
    const s = service.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
    return [
      "# HELP telemetry_spans_exported_total Spans the OTLP collector accepted.",
      "# TYPE telemetry_spans_exported_total counter",
      `telemetry_spans_exported_total{service="${s}"} ${this.exported}`,
      "# HELP telemetry_spans_dropped_total Spans dropped: queue full or the collector unreachable.",
      "# TYPE telemetry_spans_dropped_total counter",
      `telemetry_spans_dropped_total{service="${s}"} ${this.dropped}`,
    ];
  }
}
