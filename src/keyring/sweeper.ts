/**
 * The keyring's background sweep for an app: every `periodS` seconds, rotates keys whose
 * rotation is due and purges keys past their deletion date (`Keyring.sweep`). One run at a
 * time; stopped with the service. Every rotation is also a `key.rotated` notification.
 */
import type { ServiceContext } from "../service/context.ts";
import { Keyring } from "./keyring.ts";

/** The app config every keyring service shares (sm-kms, jose-ja). */
export interface KeyringAppConfig {
  key_cache_size: number;
  keyring_software_fallback: boolean;
  rotation_check_s: number;
}

/** A service's keyring: on the service's database, barrier and HSM (if any), with its sweep running. */
export function serviceKeyring(ctx: ServiceContext, cfg: KeyringAppConfig): Keyring {
  const ring = new Keyring(ctx.db, ctx.protector, {
    cacheSize: cfg.key_cache_size,
    hsm: ctx.hsm,
    softwareFallback: cfg.keyring_software_fallback,
    // Each rotation, requested or scheduled, is a `key.rotated` notification (src/notify).
    onRotated: ({ tenant, ...data }) => ctx.notifier.emit("key.rotated", tenant, { service: ctx.name, ...data }),
  });
  startKeyringSweep(ctx, ring, cfg.rotation_check_s);
  return ring;
}

export function startKeyringSweep(ctx: ServiceContext, ring: Keyring, periodS: number): void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    ring
      .sweep()
      .then((r) => (r.rotated || r.purged) && ctx.logger.info("keyring sweep", r))
      .catch((e) => {
        // Sealed barrier or a closed database after shutdown: try again next tick.
        if ((e as { code?: string })?.code !== "sealed") ctx.logger.warn("keyring sweep failed", { error: String(e) });
      })
      .finally(() => (running = false));
  }, periodS * 1000);
  (timer as { unref?: () => void }).unref?.();
  ctx.onStop(() => clearInterval(timer));
}
