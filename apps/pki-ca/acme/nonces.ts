/**
 * Replay nonces (RFC 8555 §6.5). A nonce is `expiry ‖ body ‖ HMAC(key, expiry ‖ body)`
 * (base64url, 54 characters), so only this CA's nonces are ever looked up. Two scopes:
 *
 * - `shared` (every instance can check it): the body is 16 random bytes and issuing stores
 *   nothing; using one inserts it into `acme_nonces_spent`, whose primary key makes the second
 *   use fail on any instance. A spent nonce is a unit of the ACME store's group transaction, so
 *   the nonces (and the other writes) of concurrent requests share one transaction. Expired rows
 *   are deleted as new ones come.
 * - `instance` (only this process checks it): the body is this store's random tag and a counter,
 *   and a bitmap of the last `window` counters says which are issued and unused; using one
 *   clears its bit. Nothing is written, a nonce of another process or of this one before a
 *   restart has another tag and is refused (badNonce, which clients answer with the fresh nonce
 *   the problem carries), and one older than the last `window` nonces is refused as expired.
 *   Memory: window / 8 bytes (256 KiB for the default 2^21 nonces, about 17 minutes of nonces
 *   at 2,000 requests a second).
 *
 * The HMAC key is created once, stored barrier-encrypted in the database and read by each
 * instance at its first nonce; an `instance` nonce is MACed under a key derived from it for that
 * scope alone, so a store of the other scope on the same database refuses it. Guarantees in both
 * scopes: a nonce is accepted at most once, only before its expiry, only if this CA made it.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { DataProtector } from "../../../src/service/context.ts";
import type { AcmeStore } from "./store.ts";

const TTL_MS = 15 * 60_000;
const RAW_LEN = 8 + 16 + 16;
/** Nonces an `instance` store tells apart at once (a power of two). */
const WINDOW = 1 << 21;

/** What the `instance` scope's MAC key is derived for: its nonces are never valid in the `shared` scope, nor the reverse. */
const INSTANCE_DOMAIN = "acme nonce of one instance\0";
const NONCE_CHARS = /^[A-Za-z0-9_-]{54}$/;
const TWO_32 = 2 ** 32;

/** Which instances can check a nonce: any instance sharing the database, or only the one that made it. */
export type NonceScope = "shared" | "instance";
const KEY_ID = "nonce-hmac";
/** Expired used-nonce rows are deleted at most this often (per instance). */
const PRUNE_EVERY_MS = 60_000;

export class NonceStore {
  private key: Promise<Uint8Array> | undefined;
  /** The scope's MAC key once `key` has resolved, so a nonce is made and checked without waiting on a promise. */
  private macKey: Uint8Array | undefined;
  private lastPrune = 0;
  readonly scope: NonceScope;
  private readonly ttlMs: number;
  /** `instance` scope: this store's tag, the next counter, and one bit per counter of the window (1: issued, unused). */
  private readonly tag = crypto.getRandomValues(new Uint8Array(8));
  private next = 0;
  private readonly window: number;
  private readonly unused: Uint8Array | undefined;

  constructor(
    private readonly store: AcmeStore,
    private readonly protector: DataProtector,
    opts: { scope?: NonceScope; ttlMs?: number; window?: number } = {},
  ) {
    this.scope = opts.scope ?? "shared";
    this.ttlMs = opts.ttlMs ?? TTL_MS;
    this.window = opts.window ?? WINDOW;
    if (!Number.isInteger(Math.log2(this.window)) || this.window < 8) throw new Error("the nonce window must be a power of two, at least 8");
    this.unused = this.scope === "instance" ? new Uint8Array(this.window / 8) : undefined;
    protector.onSeal(() => {
      this.key = undefined;
      this.macKey = undefined;
    });
  }

  async issue(): Promise<string> {
    const key = this.macKey ?? (await this.loadMacKey());
    const raw = Buffer.allocUnsafe(RAW_LEN);
    // Big-endian 64-bit integers, written as two 32-bit halves (both stay below 2^53).
    const expires = Date.now() + this.ttlMs;
    raw.writeUInt32BE(Math.floor(expires / TWO_32), 0);
    raw.writeUInt32BE(expires >>> 0, 4);
    if (this.unused) {
      const n = this.next++;
      raw.set(this.tag, 8);
      raw.writeUInt32BE(Math.floor(n / TWO_32), 16);
      raw.writeUInt32BE(n >>> 0, 20);
      const bit = n % this.window;
      this.unused[bit >> 3]! |= 1 << (bit & 7);
    } else raw.set(crypto.getRandomValues(new Uint8Array(16)), 8);
    this.mac(key, raw.subarray(0, 24)).copy(raw, 24, 0, 16);
    return raw.toString("base64url");
  }

  /** True once for a nonce this CA made and that has not expired; false ever after (on every instance, in `shared` scope). */
  async consume(n: unknown): Promise<boolean> {
    if (typeof n !== "string" || !NONCE_CHARS.test(n)) return false;
    const raw = Buffer.from(n, "base64url");
    if (raw.length !== RAW_LEN) return false;
    const expires = raw.readUInt32BE(0) * TWO_32 + raw.readUInt32BE(4);
    const now = Date.now();
    if (!(expires > now) || expires > now + this.ttlMs) return false;
    const key = this.macKey ?? (await this.loadMacKey());
    if (!timingSafeEqual(this.mac(key, raw.subarray(0, 24)).subarray(0, 16), raw.subarray(24))) return false;
    if (this.unused) {
      if (!timingSafeEqual(raw.subarray(8, 16), this.tag)) return false;
      const c = raw.readUInt32BE(16) * TWO_32 + raw.readUInt32BE(20);
      if (c >= this.next || c < this.next - this.window) return false;
      const bit = c % this.window;
      const mask = 1 << (bit & 7);
      if (!(this.unused[bit >> 3]! & mask)) return false;
      this.unused[bit >> 3]! &= ~mask;
      return true;
    }
    await this.prune(now);
    return this.store.spendNonce(raw.subarray(8, 24).toString("base64url"), expires);
  }

  /** HMAC-SHA-256 of a nonce's first 24 bytes (the nonce keeps the first 16 bytes of it). */
  private mac(key: Uint8Array, data: Uint8Array): Buffer {
    return createHmac("sha256", key).update(data).digest();
  }

  /** This scope's MAC key: the shared key itself, or for `instance` one derived from it for that scope. */
  private async loadMacKey(): Promise<Uint8Array> {
    const shared = await this.hmacKey();
    const key = this.unused ? new Uint8Array(createHmac("sha256", shared).update(INSTANCE_DOMAIN).digest()) : shared;
    // Kept only while the key it came from is current (a seal drops both).
    if (this.key) this.macKey = key;
    return key;
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
