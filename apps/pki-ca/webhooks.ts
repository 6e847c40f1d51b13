/**
 * Webhooks of pki-ca: a POST of JSON to each configured URL on every state change of a
 * request or certificate, and expiry notices. Each delivery is signed:
 * `Cryptoutil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, so a
 * receiver checks origin, integrity and freshness. Delivery is in the background with retries
 * (by default after 1 s, 4 s and 16 s); a receiver that stays down loses the event (logged),
 * never the request.
 * URLs must be https, except on a loopback address.
 */
import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import * as v from "valibot";
import type { Logger } from "../../src/service/log.ts";
import { runtime } from "../../src/runtime/index.ts";
import { setTimeout as sleep } from "node:timers/promises";

export const WEBHOOK_EVENTS = [
  "request.pending",
  "request.rejected",
  "certificate.issued",
  "certificate.revoked",
  "certificate.expiring",
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

const loopback = (u: URL) => u.hostname === "127.0.0.1" || u.hostname === "[::1]" || u.hostname === "localhost";

export const WebhookSchema = v.strictObject({
  url: v.pipe(
    v.string(),
    v.url(),
    v.check((s) => {
      const u = new URL(s);
      return u.protocol === "https:" || (u.protocol === "http:" && loopback(u));
    }, "webhook URLs must be https (http only on a loopback address)"),
  ),
  /** File holding the HMAC secret (at least 32 bytes). */
  secret_file: v.pipe(v.string(), v.minLength(1)),
  /** Events to send; default all. */
  events: v.optional(v.array(v.picklist(WEBHOOK_EVENTS))),
  /** PEM bundle trusted for the receiver's TLS (default: the system's). */
  ca_file: v.optional(v.string()),
});
export type WebhookConfig = v.InferOutput<typeof WebhookSchema>;


export function signature(secret: Uint8Array, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

export class WebhookNotifier {
  private readonly hooks: Array<WebhookConfig & { secret: Uint8Array; ca?: string }>;
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    hooks: WebhookConfig[],
    private readonly logger: Logger,
    private readonly retryDelaysMs: number[] = [1000, 4000, 16000],
  ) {
    this.hooks = hooks.map((h) => {
      const secret = new Uint8Array(readFileSync(h.secret_file));
      if (secret.length < 32) throw new Error(`webhook secret in ${h.secret_file} is shorter than 32 bytes`);
      return { ...h, secret, ca: h.ca_file ? readFileSync(h.ca_file, "utf8") : undefined };
    });
  }

  /** Queues `type` for every subscribed hook; returns at once. */
  emit(type: WebhookEvent, tenant: string, data: Record<string, unknown>): void {
    if (this.stopped) return;
    const body = JSON.stringify({ id: crypto.randomUUID(), type, created_at: new Date().toISOString(), tenant, data });
    for (const h of this.hooks) {
      if (h.events && !h.events.includes(type)) continue;
      const p = this.deliver(h, body).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  private async deliver(h: (typeof this.hooks)[number], body: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const t = Math.floor(Date.now() / 1000);
        const res = await runtime.fetch(h.url, {
          method: "POST",
          headers: { "content-type": "application/json", "cryptoutil-signature": signature(h.secret, t, body) },
          body,
          signal: AbortSignal.timeout(5000),
          redirect: "error",
        }, { ca: h.ca });
        await res.body?.cancel();
        if (res.ok) return;
        throw new Error(`status ${res.status}`);
      } catch (e) {
        if (this.stopped || attempt >= this.retryDelaysMs.length) {
          this.logger.warn("webhook delivery failed", { url: h.url, error: (e as Error).message });
          return;
        }
        await sleep(this.retryDelaysMs[attempt]!);
      }
    }
  }

  /** Waits for deliveries in flight (tests, graceful stop); no new ones start after stop(). */
  async settle(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  stop(): void {
    this.stopped = true;
  }
}
