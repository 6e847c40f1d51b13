/**
 * Second factors of a user: TOTP and HOTP authenticators and one-time recovery codes.
 *
 * Guarantees: seeds are 160-bit random values stored only barrier-encrypted, bound to their
 * row (tenant, factor id); a factor counts only once confirmed by a valid code; TOTP steps
 * and HOTP counters only move forward, atomically in the database, so a code works once
 * even under concurrent requests; recovery codes are 80-bit random values stored as
 * SHA-256(user id, code) and each works once.
 */
import { renderSVG } from "uqr";
import { AppError } from "../../../src/service/errors.ts";
import type { DataProtector } from "../../../src/service/context.ts";
import type { FactorRow, IdpStore } from "../store.ts";
import type { YubiKeys } from "./yubikeys.ts";
import type { Passkeys } from "./passkeys.ts";
import { splitOtp } from "./yubico-otp.ts";
import { base32Encode, otpauthUri, resyncHotp, verifyHotp, verifyTotp, TOTP_DEFAULTS, type TotpParams } from "./otp.ts";

export interface Enrolment {
  factorId: string;
  kind: "totp" | "hotp";
  secret: string;
  uri: string;
  /** The otpauth URI as a QR code, an inline SVG element. */
  qrSvg: string;
}

const enc = new TextEncoder();
const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
const normalizeCode = (c: string) => c.toUpperCase().replace(/[\s-]/g, "");

export class SecondFactors {
  private readonly totpParams: TotpParams;

  constructor(
    private readonly store: IdpStore,
    private readonly protector: DataProtector,
    private readonly cfg: { issuerName: string; driftSteps: number; hotpLookAhead: number },
    readonly yubikeys: YubiKeys,
    readonly passkeys: Passkeys,
    private readonly now: () => number = () => Date.now() / 1000,
  ) {
    this.totpParams = { ...TOTP_DEFAULTS, drift: cfg.driftSteps };
  }

  private static seedContext = (tenant: string, id: string) => `identity-idp/otp_factors/${tenant}/${id}/seed`;

  private async seed(row: FactorRow): Promise<Uint8Array> {
    return this.protector.decrypt(new Uint8Array(row.seed), SecondFactors.seedContext(row.tenant, row.id));
  }

  /** Starts enrolling an authenticator; replaces any unconfirmed one. */
  async begin(tenant: string, userId: string, account: string, kind: "totp" | "hotp"): Promise<Enrolment> {
    await this.store.deleteUnconfirmed(tenant, userId);
    const id = crypto.randomUUID();
    const seed = crypto.getRandomValues(new Uint8Array(20));
    await this.store.insertFactor({
      id,
      tenant,
      user_id: userId,
      kind,
      seed: await this.protector.encrypt(seed, SecondFactors.seedContext(tenant, id)),
      confirmed: 0,
      last_step: null,
      counter: 0,
      created_at: Math.floor(this.now()),
    });
    const uri = otpauthUri({ kind, issuer: this.cfg.issuerName, account, secret: seed });
    const e: Enrolment = { factorId: id, kind, secret: base32Encode(seed), uri, qrSvg: renderSVG(uri, { ecc: "M", border: 2, pixelSize: 5 }) };
    seed.fill(0);
    return e;
  }

  /** Shows an unconfirmed enrolment again (after a wrong first code); undefined if it is gone. */
  async resume(tenant: string, userId: string, account: string, factorId: string): Promise<Enrolment | undefined> {
    const row = (await this.store.factors(tenant, userId)).find((f) => f.id === factorId && !f.confirmed);
    if (!row) return undefined;
    const seed = await this.seed(row);
    const uri = otpauthUri({ kind: row.kind, issuer: this.cfg.issuerName, account, secret: seed });
    const e: Enrolment = { factorId: row.id, kind: row.kind, secret: base32Encode(seed), uri, qrSvg: renderSVG(uri, { ecc: "M", border: 2, pixelSize: 5 }) };
    seed.fill(0);
    return e;
  }

  /** Confirms an enrolment with a first valid code. Returns fresh recovery codes when the user had none. */
  async confirm(tenant: string, userId: string, factorId: string, code: string): Promise<{ ok: boolean; recoveryCodes?: string[] }> {
    const row = (await this.store.factors(tenant, userId)).find((f) => f.id === factorId && !f.confirmed);
    if (!row) throw new AppError("not_found", "this enrolment has expired; start again");
    const seed = await this.seed(row);
    let lastStep: number | null = null;
    let counter = 0;
    if (row.kind === "totp") {
      const step = await verifyTotp(seed, code.trim(), this.now(), null, this.totpParams);
      if (step === undefined) return { ok: false };
      lastStep = step;
    } else {
      const next = await verifyHotp(seed, code.trim(), 0, this.cfg.hotpLookAhead);
      if (next === undefined) return { ok: false };
      counter = next;
    }
    seed.fill(0);
    await this.store.confirmFactor(tenant, factorId, lastStep, counter);
    const left = await this.store.recoveryCodesLeft(tenant, userId);
    return { ok: true, recoveryCodes: left === 0 ? await this.regenerateRecoveryCodes(tenant, userId) : undefined };
  }

  /** The confirmed factors of a user: authenticators, YubiKeys and passkeys. */
  async list(tenant: string, userId: string): Promise<Array<{ id: string; kind: string; name?: string; attestation?: string; created_at: number }>> {
    const otp = (await this.store.factors(tenant, userId)).filter((f) => f.confirmed).map((f) => ({ id: f.id, kind: f.kind as string, created_at: f.created_at }));
    const keys = (await this.yubikeys.list(tenant, userId)).map((k) => ({ id: k.id, kind: "yubikey", name: k.name, created_at: k.created_at }));
    const passkeys = (await this.passkeys.list(tenant, userId)).map((k) => ({ id: k.id, kind: "passkey", name: k.name, attestation: k.fmt, created_at: k.created_at }));
    return [...otp, ...keys, ...passkeys];
  }

  async hasFactor(tenant: string, userId: string): Promise<boolean> {
    return (await this.list(tenant, userId)).length > 0;
  }

  /** Whether the user can answer the second-factor step with a passkey. */
  async hasPasskey(tenant: string, userId: string): Promise<boolean> {
    return (await this.passkeys.list(tenant, userId)).length > 0;
  }

  /**
   * Checks a second-factor code: an authenticator code (6 digits), a YubiKey OTP or a recovery code.
   * Returns which kind matched, or undefined (wrong, replayed or already used).
   */
  async verify(tenant: string, userId: string, input: string): Promise<"otp" | "hwk" | "recovery" | undefined> {
    const code = input.trim();
    if (splitOtp(code)) return (await this.yubikeys.verify(tenant, code, userId)).status === "OK" ? "hwk" : undefined;
    if (/^[0-9]{6}$/.test(code)) {
      for (const f of await this.store.factors(tenant, userId)) {
        if (!f.confirmed) continue;
        const seed = await this.seed(f);
        try {
          if (f.kind === "totp") {
            const step = await verifyTotp(seed, code, this.now(), f.last_step, this.totpParams);
            if (step !== undefined && (await this.store.advanceStep(tenant, f.id, step))) return "otp";
          } else {
            const next = await verifyHotp(seed, code, f.counter, this.cfg.hotpLookAhead);
            if (next !== undefined && (await this.store.advanceCounter(tenant, f.id, f.counter, next))) return "otp";
          }
        } finally {
          seed.fill(0);
        }
      }
      return undefined;
    }
    const norm = normalizeCode(code);
    if (!/^[A-Z2-7]{16}$/.test(norm)) return undefined;
    return (await this.store.useRecoveryCode(tenant, userId, await SecondFactors.codeHash(userId, norm), Math.floor(this.now()))) ? "recovery" : undefined;
  }

  /**
   * Resynchronises an HOTP token whose counter ran beyond the look-ahead window (the button was
   * pressed many times): two consecutive codes, searched up to 100 counters ahead.
   */
  async resync(tenant: string, userId: string, factorId: string, code1: string, code2: string): Promise<boolean> {
    const f = (await this.store.factors(tenant, userId)).find((x) => x.id === factorId && x.confirmed && x.kind === "hotp");
    if (!f) return false;
    const seed = await this.seed(f);
    try {
      const next = await resyncHotp(seed, code1.trim(), code2.trim(), f.counter, 100);
      return next !== undefined && (await this.store.advanceCounter(tenant, f.id, f.counter, next));
    } finally {
      seed.fill(0);
    }
  }

  private static async codeHash(userId: string, normalized: string): Promise<string> {
    return hex(await crypto.subtle.digest("SHA-256", enc.encode(`${userId}:${normalized}`)));
  }

  /** Ten new recovery codes (the old ones stop working); shown to the user once. */
  async regenerateRecoveryCodes(tenant: string, userId: string): Promise<string[]> {
    const codes = Array.from({ length: 10 }, () => base32Encode(crypto.getRandomValues(new Uint8Array(10))));
    await this.store.replaceRecoveryCodes(tenant, userId, await Promise.all(codes.map((c) => SecondFactors.codeHash(userId, c))));
    return codes.map((c) => c.match(/.{4}/g)!.join("-"));
  }

  /** Removes one factor of the user, whichever kind it is. */
  async remove(tenant: string, userId: string, factorId: string): Promise<void> {
    await this.store.deleteFactor(tenant, userId, factorId);
    await this.store.deleteYubikey(tenant, userId, factorId);
    await this.store.deleteCredential(tenant, userId, factorId);
  }

  /** Admin reset: every factor and recovery code of the user goes. */
  async reset(tenant: string, userId: string): Promise<void> {
    await this.store.deleteFactors(tenant, userId);
  }

  recoveryCodesLeft(tenant: string, userId: string) {
    return this.store.recoveryCodesLeft(tenant, userId);
  }
}
