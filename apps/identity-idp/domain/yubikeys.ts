/**
 * Self-hosted Yubico OTP validation: YubiKeys an administrator imports for a user (public id,
 * private id, AES-128 key) and API clients of the validation protocol. No HTTP here.
 *
 * Guarantees: the AES key and private id are stored only barrier-encrypted, bound to their row;
 * an OTP validates once: its (session, use) counters must come after the stored ones and move
 * them forward atomically (compare-and-set), so a replayed or out-of-order OTP is refused even
 * under concurrent requests. API client keys are random 160-bit HMAC-SHA1 keys, barrier-encrypted.
 */
import { AppError, notFound } from "../../../src/service/errors.ts";
import { mapStorageError } from "../../../src/storage/index.ts";
import type { DataProtector } from "../../../src/service/context.ts";
import type { IdpStore, YubiKeyRow } from "../store.ts";
import { isNewer, openOtp, splitOtp, type OtpToken } from "./yubico-otp.ts";

export type OtpStatus = "OK" | "BAD_OTP" | "REPLAYED_OTP";
export interface OtpCheck {
  status: OtpStatus;
  key?: YubiKeyRow;
  token?: OtpToken;
}

const fromHex = (h: string) => Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
const view = (r: YubiKeyRow) => ({ id: r.id, public_id: r.public_id, name: r.name, created_at: r.created_at, last_used_at: r.last_used_at });

export class YubiKeys {
  constructor(
    private readonly store: IdpStore,
    private readonly protector: DataProtector,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  private static secretContext = (tenant: string, id: string) => `identity-idp/yubikeys/${tenant}/${id}/secret`;
  private static clientContext = (id: number) => `identity-idp/yubico_clients/${id}/key`;

  async import(tenant: string, userId: string, input: { public_id: string; private_id: string; aes_key: string; name?: string }) {
    const id = crypto.randomUUID();
    const secret = new Uint8Array(22);
    secret.set(fromHex(input.aes_key), 0);
    secret.set(fromHex(input.private_id), 16);
    const row: YubiKeyRow = {
      id,
      tenant,
      user_id: userId,
      public_id: input.public_id,
      name: input.name ?? `YubiKey ${input.public_id}`,
      secret: await this.protector.encrypt(secret, YubiKeys.secretContext(tenant, id)),
      session_counter: -1,
      use_counter: -1,
      created_at: this.now(),
      last_used_at: null,
    };
    secret.fill(0);
    try {
      await this.store.insertYubikey(row);
    } catch (e) {
      if (mapStorageError(e).code === "conflict") throw new AppError("conflict", "a YubiKey with that public id is already registered in this tenant");
      throw e;
    }
    return view(row);
  }

  async list(tenant: string, userId: string) {
    return (await this.store.yubikeys(tenant, userId)).map(view);
  }

  async remove(tenant: string, userId: string, id: string): Promise<void> {
    if (!(await this.store.deleteYubikey(tenant, userId, id))) throw notFound("YubiKey");
  }

  async has(tenant: string, userId: string): Promise<boolean> {
    return (await this.store.yubikeys(tenant, userId)).length > 0;
  }

  /**
   * Validates an OTP in the tenant and, when it is good, consumes it. With `userId`, only that
   * user's keys count (the second factor); without, any key of the tenant (the protocol endpoint).
   */
  async verify(tenant: string, otp: string, userId?: string): Promise<OtpCheck> {
    const parts = splitOtp(otp);
    if (!parts) return { status: "BAD_OTP" };
    const key = await this.store.yubikeyByPublicId(tenant, parts.publicId);
    if (!key || (userId !== undefined && key.user_id !== userId)) return { status: "BAD_OTP" };
    const secret = await this.protector.decrypt(new Uint8Array(key.secret), YubiKeys.secretContext(key.tenant, key.id));
    let token: OtpToken | undefined;
    try {
      token = openOtp(parts.block, secret.subarray(0, 16), secret.subarray(16, 22));
    } finally {
      secret.fill(0);
    }
    if (!token) return { status: "BAD_OTP" };
    const stored = { session: key.session_counter, use: key.use_counter };
    if (!isNewer(token, stored)) return { status: "REPLAYED_OTP", key, token };
    const moved = await this.store.advanceYubikey(tenant, key.id, stored, { session: token.sessionCounter, use: token.useCounter }, this.now());
    return moved ? { status: "OK", key, token } : { status: "REPLAYED_OTP", key, token };
  }

  // API clients of the validation protocol

  /** A new API client; its key (base64) is returned only here. */
  async createClient(tenant: string): Promise<{ id: number; created_at: number; key: string }> {
    const key = crypto.getRandomValues(new Uint8Array(20));
    const created_at = this.now();
    for (;;) {
      const id = 1 + (crypto.getRandomValues(new Uint32Array(1))[0]! % 2_000_000_000);
      try {
        await this.store.insertYubicoClient({ id, tenant, key: await this.protector.encrypt(key, YubiKeys.clientContext(id)), created_at });
      } catch (e) {
        if (mapStorageError(e).code === "conflict") continue;
        throw e;
      }
      const out = { id, created_at, key: Buffer.from(key).toString("base64") };
      key.fill(0);
      return out;
    }
  }

  listClients(tenant: string) {
    return this.store.yubicoClients(tenant);
  }

  async removeClient(tenant: string, id: number): Promise<void> {
    if (!(await this.store.deleteYubicoClient(tenant, id))) throw notFound("API client");
  }

  /** An API client's tenant and HMAC key; undefined when there is no such client. */
  async client(id: number): Promise<{ tenant: string; key: Uint8Array } | undefined> {
    const row = await this.store.yubicoClient(id);
    if (!row) return undefined;
    return { tenant: row.tenant, key: await this.protector.decrypt(new Uint8Array(row.key), YubiKeys.clientContext(row.id)) };
  }
}
