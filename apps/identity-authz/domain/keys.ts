/**
 * Signing keys per tenant. The private JWK is stored barrier-encrypted, bound to
 * its kid — or, with an HSM configured (`hsm.*`), ES256 keys are generated inside the token
 * as non-extractable objects and only their label is stored; the imported CryptoKey of each current key is cached in memory so the
 * token path never decrypts or imports per request. Rotation: the new key signs
 * at once; the retired key stays in the JWKS until every token it signed has
 * expired (`max_token_ttl_s` plus clock skew), then is deleted. A tenant's keys are loaded
 * again after `key_reload_s`, and at once when the change feed says another instance changed
 * them (rotation, a new algorithm's key, pruning): see src/storage/change-feed.ts.
 */
import { Buffer } from "node:buffer";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from "jose";
import { AppError } from "../../../src/service/errors.ts";
import type { Dispatcher } from "../../../src/crypto/dispatcher.ts";
import type { Pkcs11Provider } from "../../../src/crypto/pkcs11/index.ts";
import type { TokenKey } from "../../../src/crypto/provider.ts";
import type { DataProtector } from "../../../src/service/context.ts";
import type { SigningAlg } from "../../../schemas/identity-authz.ts";
import type { ChangeFeed } from "../../../src/storage/change-feed.ts";
import type { AuthzStore, SigningKeyRow } from "../store.ts";
import { randomToken, sha256B64url, nowS } from "./crypto.ts";
import { es256CompactSigner } from "./jws.ts";

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  /** Where the private key is: barrier-encrypted in the database, or inside the HSM. */
  location: "barrier" | "hsm";
  /** Signs a JWT (compact JWS, header `{alg, typ, kid}`) with this key. */
  signJwt(typ: string, payload: JWTPayload): Promise<string>;
}

/** The marker stored (barrier-encrypted) in place of a private JWK for a key that lives in the HSM. */
interface HsmKeyRef {
  hsm: string; // the key's CKA_LABEL in the token
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

/** A signer over a key in the HSM: ES256/ES384 signatures computed by the token. */
function hsmSigner(crypto: Dispatcher, key: TokenKey, alg: "ES256" | "ES384", kid: string): SigningKey["signJwt"] {
  const headers = new Map<string, string>();
  return async (typ, payload) => {
    let h = headers.get(typ);
    if (!h) headers.set(typ, (h = b64u(enc.encode(JSON.stringify({ alg, typ, kid })))));
    const input = `${h}.${b64u(enc.encode(JSON.stringify(payload)))}`;
    const sig = await crypto.sign(key, alg === "ES256" ? "SHA-256" : "SHA-384", enc.encode(input));
    return `${input}.${b64u(sig)}`;
  };
}

/** A signer over a software key: the fast compact path for ES256, jose for the others. */
function softwareSigner(jwk: JWK, key: CryptoKey, alg: SigningAlg, kid: string): SigningKey["signJwt"] {
  if (alg === "ES256") {
    const compact = es256CompactSigner(jwk, kid);
    return async (typ, payload) => compact.sign(typ, payload);
  }
  return (typ, payload) => new SignJWT(payload).setProtectedHeader({ alg, typ, kid }).sign(key);
}

/** SEC1 uncompressed point -> public JWK. */
function ecPublicJwk(point: Uint8Array, crv: "P-256" | "P-384"): JWK {
  const n = (point.length - 1) / 2;
  return { kty: "EC", crv, x: b64u(point.subarray(1, 1 + n)), y: b64u(point.subarray(1 + n)) };
}

interface TenantKeys {
  loadedAt: number;
  current: Map<string, SigningKey>;
  jwks: { body: string; etag: string };
}

/** The change-feed channel of signing keys; payload: the tenant. */
export const KEYS_CHANNEL = "identity-authz.keys";
const SKEW_S = 300;
const enc = new TextEncoder();
const ctxOf = (tenant: string, kid: string) => `identity-authz/signing_keys/${tenant}/${kid}`;

export class KeyRing {
  private readonly tenants = new Map<string, TenantKeys>();
  private readonly loading = new Map<string, Promise<TenantKeys>>();
  private readonly reloadMs: number;

  constructor(
    private readonly store: AuthzStore,
    private readonly protector: DataProtector,
    private readonly maxTokenTtlS: number,
    private readonly changes: ChangeFeed,
    reloadS: number,
    /** When set, ES256 keys are generated and kept in the HSM (the token supports EC only). */
    private readonly hsm?: { provider: Pkcs11Provider; crypto: Dispatcher },
  ) {
    this.reloadMs = reloadS * 1000;
    changes.subscribe(KEYS_CHANNEL, (tenant) => this.forget(tenant), () => this.forgetAll());
    // Sealed means no signing key in memory: they are loaded again (through the barrier) after unseal.
    protector.onSeal(() => this.forgetAll());
  }

  /** Drops a tenant's loaded keys (and a load under way, which may predate the change). */
  private forget(tenant: string): void {
    this.tenants.delete(tenant);
    this.loading.delete(tenant);
  }

  private forgetAll(): void {
    this.tenants.clear();
    this.loading.clear();
  }

  /** Forgets the tenant's keys here at once, and tells the other instances. */
  private async changed(tenant: string): Promise<void> {
    this.forget(tenant);
    await this.changes.publish(KEYS_CHANNEL, tenant);
  }

  private async create(tenant: string, alg: SigningAlg): Promise<void> {
    const kid = randomToken(12);
    let pub: JWK;
    let priv: JWK | HsmKeyRef;
    if (this.hsm && alg === "ES256") {
      // Non-extractable, persistent, found again by label after a restart; only a reference is stored.
      const label = `identity-authz/${tenant}/${kid}`;
      const pair = await this.hsm.provider.generateEcKeyPair("P-256", { location: "token", label, persistent: true });
      pub = { ...ecPublicJwk(pair.publicKey.material, "P-256"), kid, alg, use: "sig" };
      priv = { hsm: label };
    } else {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === "RS256" || alg === "PS256" ? { modulusLength: 2048 } : {}) });
      pub = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
      priv = await exportJWK(privateKey);
    }
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
      const stored = JSON.parse(new TextDecoder().decode(await this.protector.decrypt(r.private_jwk, ctxOf(tenant, r.kid)))) as JWK | HsmKeyRef;
      const alg = r.alg as SigningAlg;
      if ("hsm" in stored) {
        if (!this.hsm) throw new AppError("unavailable", `signing key ${r.kid} lives in an HSM, and none is configured (hsm.*)`);
        const key = await this.hsm.provider.findKey(stored.hsm);
        current.set(r.alg, { kid: r.kid, alg, location: "hsm", signJwt: hsmSigner(this.hsm.crypto, key, alg as "ES256", r.kid) });
      } else {
        const key = (await importJWK(stored, r.alg)) as CryptoKey;
        current.set(r.alg, { kid: r.kid, alg, location: "barrier", signJwt: softwareSigner(stored, key, alg, r.kid) });
      }
    }
    // Newest first, so clients that pick the first match pick the current key.
    const body = JSON.stringify({ keys: published.reverse() });
    return { loadedAt: Date.now(), current, jwks: { body, etag: `"${(await sha256B64url(body)).slice(0, 27)}"` } };
  }

  private async keys(tenant: string): Promise<TenantKeys> {
    const hit = this.tenants.get(tenant);
    if (hit && Date.now() - hit.loadedAt < this.reloadMs) return hit;
    let p = this.loading.get(tenant);
    if (!p) {
      const load = this.load(tenant);
      this.loading.set(tenant, load);
      // Kept only if no change was heard of while it loaded (forget() drops it from `loading`).
      const current = () => this.loading.get(tenant) === load;
      load.then(
        (k) => {
          if (!current()) return;
          this.loading.delete(tenant);
          this.tenants.set(tenant, k);
        },
        () => void (current() && this.loading.delete(tenant)),
      );
      p = load;
    }
    return p;
  }

  /** The current key of an algorithm; created on first use (e.g. when a client selects RS256). */
  async signer(tenant: string, alg: SigningAlg = "ES256"): Promise<SigningKey> {
    let k = (await this.keys(tenant)).current.get(alg);
    if (!k) {
      await this.create(tenant, alg);
      await this.changed(tenant);
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

  /** Before a tenant is deleted: its keys kept in the HSM are destroyed there (the rows go with the tenant). */
  async destroyTenantKeys(tenant: string): Promise<void> {
    for (const r of await this.store.keysOf(tenant)) {
      const stored = JSON.parse(new TextDecoder().decode(await this.protector.decrypt(r.private_jwk, ctxOf(tenant, r.kid)))) as JWK | HsmKeyRef;
      if ("hsm" in stored && this.hsm) await this.hsm.provider.destroyKey(await this.hsm.provider.findKey(stored.hsm));
    }
    await this.changed(tenant);
  }

  /** Retires the current key of `alg` and makes a new one current. */
  async rotate(tenant: string, alg: SigningAlg): Promise<void> {
    const rows = await this.store.keysOf(tenant);
    for (const r of rows) if (r.status === "current" && r.alg === alg) await this.store.retireKey(r.kid, nowS() + this.maxTokenTtlS + SKEW_S);
    await this.create(tenant, alg);
    await this.changed(tenant);
  }

  /** The schedule: rotates keys older than `maxAgeS`, prunes retired keys past their publication. */
  async rotateDue(maxAgeS: number): Promise<void> {
    for (const tenant of await this.store.tenantsWithKeys()) {
      for (const r of await this.store.keysOf(tenant)) {
        if (r.status === "current" && r.created_at + maxAgeS <= nowS()) await this.rotate(tenant, r.alg as SigningAlg);
      }
      await this.store.pruneKeys(tenant);
      await this.changed(tenant);
    }
  }
}
