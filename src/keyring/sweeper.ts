/**
 * The keyring's background sweep for an app: every `periodS` seconds, rotates keys whose
 * rotation is due and purges keys past their deletion date (`Keyring.sweep`). One run at a
 * time; stopped with the service.
 */
import type { ServiceContext } from "../service/context.ts";
import type { Keyring } from "./keyring.ts";

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
