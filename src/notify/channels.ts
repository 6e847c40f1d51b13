/**
 * The channels a `Notifier` delivers over, each one attempt per `send` (the notifier retries):
 *
 * - signed webhook: a POST of the notification's JSON with
 *   `Cryptoutil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, so a
 *   receiver checks origin, integrity and freshness;
 * - Slack-compatible incoming webhook: a POST of `{"text": ...}` (Slack, Mattermost, Rocket.Chat);
 * - e-mail over SMTP (nodemailer): STARTTLS or implicit TLS, optional login, a plain-text body.
 *
 * URLs must be https, except on a loopback address. A 2xx answer is delivered; anything else,
 * a timeout or a refused connection throws.
 */
import { runtime } from "../runtime/index.ts";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import type { Transporter } from "nodemailer";

export interface Notification {
  id: string;
  type: string;
  created_at: string;
  tenant: string;
  data: Record<string, unknown>;
}

export interface Channel {
  /** For logs and dead letters: the kind and where (never a secret). */
  name: string;
  /** The event types it takes; unset: all. */
  events?: string[];
  /** Takes only events emitted to it by name (`Notifier.emit(..., to)`), never the others. */
  direct?: boolean;
  /** Delays before each retry on this channel (default: the notifier's). */
  retryDelaysMs?: number[];
  send(n: Notification): Promise<void>;
}

const loopback = (u: URL) => u.hostname === "127.0.0.1" || u.hostname === "[::1]" || u.hostname === "localhost";
const httpsUrl = v.pipe(
  v.string(),
  v.url(),
  v.check((s) => {
    const u = new URL(s);
    return u.protocol === "https:" || (u.protocol === "http:" && loopback(u));
  }, "notification URLs must be https (http only on a loopback address)"),
);
const events = v.optional(v.array(v.pipe(v.string(), v.regex(/^[a-z0-9_.-]{1,64}$/))));

export const WebhookChannelSchema = v.strictObject({
  url: httpsUrl,
  /** File holding the HMAC secret (at least 32 bytes). */
  secret_file: v.pipe(v.string(), v.minLength(1)),
  events,
  /** PEM bundle trusted for the receiver's TLS (default: the system's). */
  ca_file: v.optional(v.string()),
});
export const SlackChannelSchema = v.strictObject({ url: httpsUrl, events, ca_file: v.optional(v.string()) });
export const EmailChannelSchema = v.strictObject({
  host: v.pipe(v.string(), v.minLength(1)),
  port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)),
  /** `starttls` (upgrade required), `tls` (implicit TLS, port 465), or `none` on a loopback host only. */
  security: v.optional(v.picklist(["starttls", "tls", "none"]), "starttls"),
  from: v.pipe(v.string(), v.email()),
  to: v.pipe(v.array(v.pipe(v.string(), v.email())), v.minLength(1)),
  user: v.optional(v.string()),
  password_file: v.optional(v.string()),
  ca_file: v.optional(v.string()),
  events,
});

/** The template's `notifications` section: channels every service may notify over. */
export const NotificationsConfig = v.optional(
  v.strictObject({
    webhooks: v.optional(v.array(WebhookChannelSchema), []),
    email: v.optional(v.array(EmailChannelSchema), []),
    slack: v.optional(v.array(SlackChannelSchema), []),
    /** Delays before each retry of a failed delivery, then the dead-letter list. */
    retry_seconds: v.optional(v.pipe(v.array(v.pipe(v.number(), v.minValue(0.01), v.maxValue(3600))), v.maxLength(10)), [1, 4, 16]),
  }),
  {},
);

/** The webhook signature header's value. */
export function webhookSignature(secret: Uint8Array, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

async function post(url: string, body: string, headers: Record<string, string>, ca?: string): Promise<void> {
  const res = await runtime.fetch(
    url,
    { method: "POST", headers: { "content-type": "application/json", ...headers }, body, signal: AbortSignal.timeout(5000), redirect: "error" },
    { ca },
  );
  await res.body?.cancel();
  if (!res.ok) throw new Error(`status ${res.status}`);
}

const readCa = (file?: string) => (file ? readFileSync(file, "utf8") : undefined);

/** One line for people: the event, the tenant and its data's short values. */
export function summaryOf(n: Notification): string {
  const facts = Object.entries(n.data)
    .filter(([, x]) => ["string", "number", "boolean"].includes(typeof x))
    .map(([k, x]) => `${k}=${String(x).slice(0, 200)}`)
    .join(", ");
  return `[${n.tenant}] ${n.type}${facts ? `: ${facts}` : ""}`;
}

export function webhookChannel(c: v.InferOutput<typeof WebhookChannelSchema>): Channel {
  const secret = new Uint8Array(readFileSync(c.secret_file));
  if (secret.length < 32) throw new Error(`webhook secret in ${c.secret_file} is shorter than 32 bytes`);
  const ca = readCa(c.ca_file);
  return {
    name: `webhook ${c.url}`,
    events: c.events,
    send: (n) => {
      const body = JSON.stringify(n);
      return post(c.url, body, { "cryptoutil-signature": webhookSignature(secret, Math.floor(Date.now() / 1000), body) }, ca);
    },
  };
}

export function slackChannel(c: v.InferOutput<typeof SlackChannelSchema>): Channel {
  const ca = readCa(c.ca_file);
  return { name: `slack ${new URL(c.url).host}`, events: c.events, send: (n) => post(c.url, JSON.stringify({ text: summaryOf(n) }), {}, ca) };
}

export function emailChannel(c: v.InferOutput<typeof EmailChannelSchema>): Channel {
  if (c.security === "none" && !["127.0.0.1", "::1", "localhost"].includes(c.host)) throw new Error("email: security none is for a loopback host only");
  const password = c.password_file ? readFileSync(c.password_file, "utf8").replace(/\r?\n$/, "") : undefined;
  const ca = readCa(c.ca_file);
  // nodemailer is loaded with the first mail: a service that never sends one never holds it.
  let transport: Promise<Transporter> | undefined;
  const transporter = () =>
    (transport ??= import("nodemailer").then(({ createTransport }) =>
      createTransport({
        host: c.host,
        port: c.port,
        secure: c.security === "tls",
        requireTLS: c.security === "starttls",
        ignoreTLS: c.security === "none",
        auth: c.user ? { user: c.user, pass: password } : undefined,
        tls: { minVersion: "TLSv1.2", ...(ca ? { ca } : {}) },
        connectionTimeout: 10_000,
        socketTimeout: 10_000,
      }),
    ));
  return {
    name: `email ${c.host}:${c.port}`,
    events: c.events,
    send: async (n) => {
      await (await transporter()).sendMail({
        from: c.from,
        to: c.to,
        subject: `cryptoutil: ${n.type} (${n.tenant})`,
        text: `${summaryOf(n)}\n\n${JSON.stringify(n, null, 2)}\n`,
        headers: { "X-Cryptoutil-Event": n.type, "X-Cryptoutil-Event-Id": n.id },
      });
    },
  };
}

/** The channels of a `notifications`-shaped config (the template's, pki-ca's), each with its retry delays. */
export function channelsOf(
  c: { webhooks?: v.InferOutput<typeof WebhookChannelSchema>[]; email?: v.InferOutput<typeof EmailChannelSchema>[]; slack?: v.InferOutput<typeof SlackChannelSchema>[] },
  retryDelaysMs?: number[],
): Channel[] {
  const all = [...(c.webhooks ?? []).map(webhookChannel), ...(c.email ?? []).map(emailChannel), ...(c.slack ?? []).map(slackChannel)];
  return retryDelaysMs ? all.map((ch) => ({ ...ch, retryDelaysMs })) : all;
}
