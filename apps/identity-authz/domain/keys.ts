/**
 * Signing keys per tenant. The private JWK is stored barrier-encrypted, bound to
 * its kid; the imported CryptoKey of each current key is cached in memory so the
 * token path never decrypts or imports per request. Rotation: the new key signs
 * at once; the retired key stays in the JWKS until every token it signed has
 * expired (`max_token_ttl_s` plus clock skew), then is deleted.
 */
import { exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { DataProtector } from "../../../src/service/context.ts";
import type { SigningAlg } from "../../../schemas/identity-authz.ts";
import type { AuthzStore, SigningKeyRow } from "../store.ts";
import { randomToken, sha256B64url, nowS } from "./crypto.ts";
import { es256CompactSigner, type CompactSigner } from "./jws.ts";

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  key: CryptoKey;
  /** ES256 only: the fast compact signer used for access tokens. */
  compact?: CompactSigner;
}

interface TenantKeys {
  loadedAt: number;
  current: Map<string, SigningKey>;
  jwks: { body: string; etag: string };
}

const RELOAD_MS = 60_000; // other instances' rotations become visible within this
const SKEW_S = 300;
const enc = new TextEncoder();
const ctxOf = (tenant: string, kid: string) => `identity-authz/signing_keys/${tenant}/${kid}`;

export class KeyRing {
  private readonly tenants = new Map<string, TenantKeys>();
  private readonly loading = new Map<string, Promise<TenantKeys>>();

  constructor(
    private readonly store: AuthzStore,
    private readonly protector: DataProtector,
    private readonly maxTokenTtlS: number,
  ) {}

  private async create(tenant: string, alg: SigningAlg): Promise<void> {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === "RS256" || alg === "PS256" ? { modulusLength: 2048 } : {}) });
    const kid = randomToken(12);
    const pub = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
    const priv = await exportJWK(privateKey);
    const row: SigningKeyRow = {
      kid,
      tenant,
      alg,
      status: "current",
      public_jwk: JSON.stringify(pub),
      private_jwk: await this.protector.encrypt(enc.encode(JSON.stringify(priv)), ctxOf(tenant, kid)),
      created_at: nowS(),
      retired_at: null,
      publish_until: null,
    };
    await this.store.insertCurrentKey(row); // loses quietly to a concurrent creator; the reload picks the winner
  }

  private async load(tenant: string): Promise<TenantKeys> {
    let rows = await this.store.keysOf(tenant);
    if (!rows.some((r) => r.status === "current" && r.alg === "ES256")) {
      await this.create(tenant, "ES256");
      rows = await this.store.keysOf(tenant);
    }
    const t = nowS();
    const current = new Map<string, SigningKey>();
    const published: JWK[] = [];
    for (const r of rows) {
      if (r.status === "retired" && (r.publish_until ?? 0) < t) continue;
      published.push(JSON.parse(r.public_jwk) as JWK);
      if (r.status !== "current") continue;
      const jwk = JSON.parse(new TextDecoder().decode(await this.protector.decrypt(r.private_jwk, ctxOf(tenant, r.kid)))) as JWK;
      current.set(r.alg, {
        kid: r.kid,
        alg: r.alg as SigningAlg,
        key: (await importJWK(jwk, r.alg)) as CryptoKey,
        compact: r.alg === "ES256" ? es256CompactSigner(jwk, r.kid) : undefined,
      });
    }
    // Newest first, so clients that pick the first match pick the current key.
    const body = JSON.stringify({ keys: published.reverse() });
    return { loadedAt: Date.now(), current, jwks: { body, etag: `"${(await sha256B64url(body)).slice(0, 27)}"` } };
  }

  private async keys(tenant: string): Promise<TenantKeys> {
    const hit = this.tenants.get(tenant);
    if (hit && Date.now() - hit.loadedAt < RELOAD_MS) return hit;
    let p = this.loading.get(tenant);
    if (!p) {
      p = this.load(tenant).finally(() => this.loading.delete(tenant));
      this.loading.set(tenant, p);
    }
    const k = await p;
    this.tenants.set(tenant, k);
    return k;
  }

  /** The current key of an algorithm; created on first use (e.g. when a client selects RS256). */
  async signer(tenant: string, alg: SigningAlg = "ES256"): Promise<SigningKey> {
    let k = (await this.keys(tenant)).current.get(alg);
    if (!k) {
      await this.create(tenant, alg);
      this.tenants.delete(tenant);
      k = (await this.keys(tenant)).current.get(alg);
      if (!k) throw new Error(`no ${alg} key for tenant ${tenant}`);
    }
    return k;
  }

  async jwks(tenant: string): Promise<{ body: string; etag: string }> {
    return (await this.keys(tenant)).jwks;
  }

  /** Public JWKs of the tenant (current and still-published retired keys). */
  async publicKeys(tenant: string): Promise<JWK[]> {
    return (JSON.parse((await this.keys(tenant)).jwks.body) as { keys: JWK[] }).keys;
  }

  async list(tenant: string) {
    await this.keys(tenant);
    return (await this.store.keysOf(tenant)).map((r) => ({
      kid: r.kid,
      alg: r.alg,
      status: r.status as "current" | "retired",
      created_at: r.created_at,
      retired_at: r.retired_at,
      publish_until: r.publish_until,
    }));
  }

  /** Retires the current key of `alg` and makes a new one current. */
  async rotate(tenant: string, alg: SigningAlg): Promise<void> {
    const rows = await this.store.keysOf(tenant);
    for (const r of rows) if (r.status === "current" && r.alg === alg) await this.store.retireKey(r.kid, nowS() + this.maxTokenTtlS + SKEW_S);
    await this.create(tenant, alg);
    this.tenants.delete(tenant);
  }

  /** The schedule: rotates keys older than `maxAgeS`, prunes retired keys past their publication. */
  async rotateDue(maxAgeS: number): Promise<void> {
    for (const tenant of await this.store.tenantsWithKeys()) {
      for (const r of await this.store.keysOf(tenant)) {
        if (r.status === "current" && r.created_at + maxAgeS <= nowS()) await this.rotate(tenant, r.alg as SigningAlg);
      }
      await this.store.pruneKeys(tenant);
      this.tenants.delete(tenant);
    }
  }
}
