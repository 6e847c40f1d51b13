/**
 * Replay nonces (RFC 8555 §6.5) that every instance of pki-ca can check: a nonce is
 * `expiry ‖ random ‖ HMAC(key, expiry ‖ random)` (base64url), so issuing one stores nothing, and
 * using one inserts it into `acme_nonces_spent`, whose primary key makes the second use fail on
 * any instance. The HMAC key is created once, stored barrier-encrypted in the database and read
 * by each instance at its first nonce; expired rows are deleted as new ones come. A spent nonce
 * is a unit of the ACME store's group transaction, so the nonces (and the other writes) of
 * concurrent requests share one transaction instead of one each. Guarantees: a nonce is
 * accepted at most once, only before its expiry, only if this CA (any instance) made it;
 * nothing about nonces is held in memory but the key and the ones waiting for the current
 * batch's commit.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { DataProtector } from "../../../src/service/context.ts";
import type { AcmeStore } from "./store.ts";

const TTL_MS = 15 * 60_000;
const RAW_LEN = 8 + 16 + 16;
const KEY_ID = "nonce-hmac";
/** Expired used-nonce rows are deleted at most this often (per instance). */
const PRUNE_EVERY_MS = 60_000;

export class NonceStore {
  private key: Promise<Uint8Array> | undefined;
  private lastPrune = 0;

  constructor(
    private readonly store: AcmeStore,
    private readonly protector: DataProtector,
    private readonly ttlMs = TTL_MS,
  ) {
    protector.onSeal(() => (this.key = undefined));
  }

  async issue(): Promise<string> {
    const raw = new Uint8Array(RAW_LEN);
    new DataView(raw.buffer).setBigUint64(0, BigInt(Date.now() + this.ttlMs));
    raw.set(crypto.getRandomValues(new Uint8Array(16)), 8);
    raw.set(this.mac(await this.hmacKey(), raw.subarray(0, 24)), 24);
    return Buffer.from(raw).toString("base64url");
  }

  /** True once for a nonce this CA made and that has not expired; false ever after, on every instance. */
  async consume(n: unknown): Promise<boolean> {
    if (typeof n !== "string" || n.length !== 54 || !/^[A-Za-z0-9_-]+$/.test(n)) return false;
    const raw = new Uint8Array(Buffer.from(n, "base64url"));
    if (raw.length !== RAW_LEN) return false;
    const expires = Number(new DataView(raw.buffer, raw.byteOffset).getBigUint64(0));
    const now = Date.now();
    if (!(expires > now) || expires > now + this.ttlMs) return false;
    if (!timingSafeEqual(this.mac(await this.hmacKey(), raw.subarray(0, 24)), raw.subarray(24))) return false;
    await this.prune(now);
    return this.store.spendNonce(Buffer.from(raw.subarray(8, 24)).toString("base64url"), expires);
  }

  private mac(key: Uint8Array, data: Uint8Array): Uint8Array {
    return new Uint8Array(createHmac("sha256", key).update(data).digest().subarray(0, 16));
  }

  /** The shared key: created by the first instance that needs it, read by the others. */
  private hmacKey(): Promise<Uint8Array> {
    this.key ??= (async () => {
      const context = `acme_nonce_keys/${KEY_ID}`;
      const sealed = await this.protector.encrypt(crypto.getRandomValues(new Uint8Array(32)), context);
      await this.store.db.insertInto("acme_nonce_keys").values({ id: KEY_ID, key_sealed: sealed, created_at: new Date().toISOString() }).onConflict((oc) => oc.column("id").doNothing()).execute();
      const row = await this.store.db.selectFrom("acme_nonce_keys").select("key_sealed").where("id", "=", KEY_ID).executeTakeFirstOrThrow();
      return this.protector.decrypt(row.key_sealed, context);
    })().catch((e) => {
      this.key = undefined;
      throw e;
    });
    return this.key;
  }

  private async prune(now: number): Promise<void> {
    if (now - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now;
    await this.store.pruneNonces(now);
  }
}
