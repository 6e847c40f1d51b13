/**
 * Webhooks of pki-ca: a POST of JSON to each configured URL on every state change of a
 * request or certificate, and expiry notices; also by e-mail (`email`) and to Slack-compatible
 * incoming webhooks (`slack`). Each webhook delivery is signed:
 * `Cryptoutil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, so a
 * receiver checks origin, integrity and freshness. Delivery is in the background with retries
 * (by default after 1 s, 4 s and 16 s); what a receiver still refuses then goes to the
 * notifier's dead-letter list (logged), never failing the request (src/notify).
 * URLs must be https, except on a loopback address.
 */
import * as v from "valibot";
import { channelsOf, webhookSignature, WebhookChannelSchema, type Channel, type EmailChannelSchema, type SlackChannelSchema } from "../../src/notify/channels.ts";

export const WEBHOOK_EVENTS = [
  "request.pending",
  "request.rejected",
  "certificate.issued",
  "certificate.revoked",
  "certificate.expiring",
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** A signed webhook (src/notify/channels.ts), subscribed to some of pki-ca's events (default all). */
export const WebhookSchema = v.strictObject({ ...WebhookChannelSchema.entries, events: v.optional(v.array(v.picklist(WEBHOOK_EVENTS))) });
export type WebhookConfig = v.InferOutput<typeof WebhookSchema>;


/** The signature header of a webhook delivery (see src/notify/channels.ts). */
export const signature = webhookSignature;

/**
 * pki-ca's own channels (its `webhooks`, `email` and `slack` settings, retried after
 * `webhook_retry_seconds`), added to the service's notifier (src/notify): retries with backoff,
 * then the dead-letter list of the admin API, next to the template's `notifications` channels.
 */
export function pkiCaChannels(config: {
  webhooks: WebhookConfig[];
  email: v.InferOutput<typeof EmailChannelSchema>[];
  slack: v.InferOutput<typeof SlackChannelSchema>[];
  webhook_retry_seconds: number[];
}): Channel[] {
  return channelsOf(config, config.webhook_retry_seconds.map((s) => s * 1000));
}
