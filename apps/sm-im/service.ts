/**
 * sm-im: end-to-end encrypted messages between users of identity. Browsers hold the private
 * keys and encrypt; the service stores and relays ciphertext only. `domain.ts` holds the rules,
 * `routes.ts` the API under /service and /browser, `pages/` the browser client.
 */
import * as v from "valibot";
import { parseAppSection } from "../../src/service/config.ts";
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { ImStore } from "./store.ts";
import { Messenger } from "./domain.ts";
import { imRoutes } from "./routes.ts";
import { imPages } from "./pages/index.ts";

const days = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(3650));

/** The `app` section of sm-im's config. */
export const ImConfig = v.strictObject({
  /** Days a message is kept after it was sent (the default of every tenant). */
  retention_days: v.optional(days, 30),
  /** Per tenant: its own retention. */
  tenants: v.optional(v.record(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,62}$/)), v.strictObject({ retention_days: v.optional(days) })), {}),
  /** Largest ciphertext of one message (attachments included), in base64url characters; keep it under server.body_limit. */
  max_message_bytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1024), v.maxValue(8 * 1024 * 1024)), 768 * 1024),
  /** Seconds between sweeps of expired messages. */
  sweep_interval_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 300),
});
export type ImConfig = v.InferOutput<typeof ImConfig>;

export const parseImConfig = (app: unknown): ImConfig => parseAppSection(ImConfig, app);

export interface ImOptions {
  /** The clock of retention and timestamps (tests inject one). */
  now?: () => Date;
}

export function createSmIm(opts: ImOptions = {}): ServiceDefinition {
  // One domain per service context: the template calls `api` once per prefix.
  const instances = new WeakMap<ServiceContext, Messenger>();
  const messengerOf = (ctx: ServiceContext) => {
    let m = instances.get(ctx);
    if (!m) {
      const cfg = parseImConfig(ctx.config.app);
      instances.set(ctx, (m = new Messenger(new ImStore(ctx.db), cfg, opts.now)));
      const messenger = m;
      const timer = setInterval(() => {
        messenger.sweep().catch((e) => ctx.logger.warn("sweeping expired messages failed; retrying at the next sweep", { error: e }));
      }, cfg.sweep_interval_s * 1000);
      (timer as { unref?: () => void }).unref?.();
      ctx.onStop(() => clearInterval(timer));
    }
    return m;
  };
  return {
    name: "sm-im",
    title: "sm-im: end-to-end encrypted messages",
    description:
      "Messages between users of identity, encrypted in the sender's browser to each recipient device (General JSON JWE, ECDH-ES+A256KW on P-256 or X25519, A256GCM). The service stores and relays ciphertext only; a device registered later cannot open earlier messages.",
    version: "1.0.0",
    defaultPort: 8700,
    migrations,
    checkConfig: (c) => void parseImConfig(c.app),
    api: (ctx) => imRoutes(messengerOf(ctx)),
    pages: () => imPages(),
  };
}

export const smIm = createSmIm();
