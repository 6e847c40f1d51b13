/**
 * Certificates that renew themselves while the service runs: the service's client
 * certificate (mTLS calls to other services) and the server leaf of its mTLS listener.
 *
 * A periodic check asks whether less than the renewal window (a third of the validity, at
 * most RENEW_BEFORE_DAYS) remains; only then is the material reloaded, which issues a new
 * certificate from the suite CA and stores its key sealed (`loadOrCreateTlsMaterial`). Those
 * who use it read `current` on every use, or are told through `onRenew`: no restart.
 */
import { renewalDue, type TlsMaterial } from "./tls-material.ts";

export interface RenewingTlsOptions {
  /** Issues (or loads) the material as of `now`; called only when renewal is due. */
  reload(now: Date): Promise<TlsMaterial>;
  /** Tests move time with this; default the system clock. */
  clock?: () => Date;
  onRenew?(material: TlsMaterial): void;
  /** A failed check is reported here and retried at the next one. */
  onError?(e: unknown): void;
}

export class RenewingTlsMaterial {
  private material: TlsMaterial;
  private timer?: ReturnType<typeof setInterval>;
  private running?: Promise<boolean>;

  constructor(initial: TlsMaterial, private readonly opts: RenewingTlsOptions) {
    this.material = initial;
  }

  /** The material in force now. */
  get current(): TlsMaterial {
    return this.material;
  }

  /** Renews when due; true when a new certificate took over. One check runs at a time. */
  renewIfDue(): Promise<boolean> {
    this.running ??= this.check().finally(() => (this.running = undefined));
    return this.running;
  }

  private async check(): Promise<boolean> {
    const now = (this.opts.clock ?? (() => new Date()))();
    const { notBefore, notAfter } = this.material.leaf;
    if (!notBefore || !renewalDue({ notBefore, notAfter }, now)) return false;
    const next = await this.opts.reload(now);
    if (next.leaf.serialNumber === this.material.leaf.serialNumber) return false;
    this.material = next;
    this.opts.onRenew?.(next);
    return true;
  }

  /** Checks every `intervalMs` until `stop()`; the timer does not keep the process alive. */
  start(intervalMs: number): void {
    this.timer ??= setInterval(() => void this.renewIfDue().catch((e) => this.opts.onError?.(e)), intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }
}
