/**
 * pki-ca's ACME rules (RFC 8555): accounts, External Account Binding, orders, authorizations
 * and http-01 challenges. No HTTP here: routes.ts verifies the JWS, nonce and URL and hands over
 * the verified key or account; this file throws `AcmeProblem`s.
 *
 * ACME is only a front end over the RA: finalize submits the CSR to `PkiCa.submit` under the
 * order's profile, so the same policy, lint, storage, webhooks and (through `PkiCa.revoke`)
 * revocation, CRLs and OCSP apply as to the REST API. Guarantees: an order is finalized only
 * when every one of its authorizations is valid and the CSR names exactly its identifiers;
 * a certificate is revoked only by the account whose order issued it or by a JWS made with the
 * certificate's own key; everything is read and written within the path's tenant.
 */
import { calculateJwkThumbprint, decodeProtectedHeader, flattenedVerify, importJWK, type FlattenedJWS, type JWK, type ProtectedHeaderParameters } from "jose";
import type { DataProtector } from "../../../src/service/context.ts";
import { AppError } from "../../../src/service/errors.ts";
import { parseCsr, type ParsedCsr } from "../../../src/pki/csr.ts";
import { toPem } from "../../../src/pki/keys.ts";
import { timeOrderedId, uuidV7 } from "../../../src/pki/serial.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { REVOCATION_REASONS, type PkiCa, type RevocationReason } from "../domain.ts";
import type { CertificateRow } from "../store.ts";
import { effectiveDnsNames, ipBytes, nameReasons } from "../policy.ts";
import type { AcmeConfig, AcmeTenant } from "./config.ts";
import { NonceStore, type NonceScope } from "./nonces.ts";
import { AcmeProblem, malformed, unauthorized } from "./problem.ts";
import type { AccountRow, AcmeStore, AuthorizationRow, OrderRow, RateKind } from "./store.ts";
import { isNonPublicAddress, type ChallengeType, type ValidationAuthority } from "./validation.ts";

const MAX_IDENTIFIERS = 100;
const MAX_CONTACTS = 10;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** How far in the past newOrder's notBefore may be (clock skew between client and CA). */
const VALIDITY_SKEW_MS = 60_000;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Reasons an ACME client may give (RFC 5280 codes); a subscriber cannot claim a CA compromise or put a hold. */
const ACME_REASONS = new Map<number, RevocationReason>(
  Object.entries(REVOCATION_REASONS)
    .filter(([name]) => name !== "cACompromise" && name !== "certificateHold")
    .map(([name, code]) => [code, name as RevocationReason]),
);

/**
 * An order as the domain hands it to the HTTP layer: its row, and the ids of its authorizations
 * when they were read or made on the way (fixed when the order is made), so its view need not
 * read them again.
 */
export type OrderState = OrderRow & { authorizationIds?: readonly string[] };

export interface Identifier {
  type: "dns" | "ip";
  value: string;
}

/** The absolute URLs of one tenant's ACME resources (from the request's origin). */
export class AcmeUrls {
  constructor(
    readonly origin: string,
    readonly tenant: string,
  ) {}
  get base() {
    return `${this.origin}/acme/${this.tenant}`;
  }
  directory = () => `${this.base}/directory`;
  newNonce = () => `${this.base}/new-nonce`;
  newAccount = () => `${this.base}/new-account`;
  newOrder = () => `${this.base}/new-order`;
  revokeCert = () => `${this.base}/revoke-cert`;
  keyChange = () => `${this.base}/key-change`;
  renewalInfo = () => `${this.base}/renewal-info`;
  account = (id: string) => `${this.base}/acct/${id}`;
  orders = (id: string) => `${this.base}/acct/${id}/orders`;
  order = (id: string) => `${this.base}/order/${id}`;
  finalize = (id: string) => `${this.base}/order/${id}/finalize`;
  authz = (id: string) => `${this.base}/authz/${id}`;
  challenge = (id: string, type: ChallengeType) => `${this.base}/chall/${id}/${type}`;
  certificate = (serial: string) => `${this.base}/cert/${serial}`;
}

const randomToken = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");

/** An IP identifier's canonical key (its bytes), so 10.0.0.1 and ::ffff-free spellings compare by value. */
const ipKey = (ip: string) => Buffer.from(ipBytes(ip)!).toString("hex");
const identifierKey = (i: Identifier) => (i.type === "dns" ? `dns:${i.value}` : `ip:${ipKey(i.value)}`);

const DNS_NAME = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const CHALLENGE_TYPES: readonly ChallengeType[] = ["http-01", "dns-01", "tls-alpn-01"];

/** The challenges offered for an authorization: a wildcard only dns-01, an IP address no dns-01 (RFC 8738). */
export function challengeTypes(a: Pick<AuthorizationRow, "identifier_type" | "wildcard">): ChallengeType[] {
  if (a.wildcard) return ["dns-01"];
  return a.identifier_type === "ip" ? ["http-01", "tls-alpn-01"] : [...CHALLENGE_TYPES];
}

/** Prune rate-limit events older than the longest window at most this often. */
const RATE_PRUNE_MS = 10 * 60_000;

export class AcmeAuthority {
  /** Validations started and not yet recorded (awaited at dispose). */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Replay nonces: checked by any instance (database) or by this one (memory), as configured. */
  readonly nonces: NonceStore;
  private lastRatePrune = 0;

  constructor(
    readonly config: AcmeConfig,
    readonly ca: PkiCa,
    readonly store: AcmeStore,
    readonly va: ValidationAuthority,
    private readonly protector: DataProtector,
    private readonly onValidationError: (e: unknown) => void = () => undefined,
    nonceScope: NonceScope = "shared",
  ) {
    this.nonces = new NonceStore(store, protector, { scope: nonceScope });
  }

  // Accounts, orders and authorizations get time-ordered ids (timeOrderedId): inserts into their
  // primary keys and the indexes that carry them land on the pages of the moment, not a random
  // page each. EAB key ids stay fully random.

  /** The tenant's ACME settings; an unconfigured tenant has no ACME (404). */
  tenant(name: string): AcmeTenant {
    const t = Object.hasOwn(this.config.tenants, name) ? this.config.tenants[name] : undefined;
    if (!t) throw malformed(`tenant ${name.slice(0, 64)} does not serve ACME`, 404);
    return t;
  }

  directory(u: AcmeUrls): Record<string, unknown> {
    const t = this.tenant(u.tenant);
    const meta: Record<string, unknown> = {
      externalAccountRequired: t.external_account_required,
      caaIdentities: this.config.caa_identities,
      profiles: Object.fromEntries(t.profiles.map((p) => [p, `pki-ca profile ${p}${p === t.profiles[0] ? " (the default)" : ""}`])),
    };
    if (this.config.terms_of_service) meta.termsOfService = this.config.terms_of_service;
    if (this.config.website) meta.website = this.config.website;
    return { newNonce: u.newNonce(), newAccount: u.newAccount(), newOrder: u.newOrder(), revokeCert: u.revokeCert(), keyChange: u.keyChange(), renewalInfo: u.renewalInfo(), meta };
  }

  // --- accounts ---

  /** The account a `kid` names (the account URL of this tenant); valid accounts only. */
  async accountByKid(u: AcmeUrls, kid: string): Promise<AccountRow> {
    const prefix = `${u.base}/acct/`;
    const id = kid.startsWith(prefix) ? kid.slice(prefix.length) : "";
    const a = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? await this.store.account(u.tenant, id) : undefined;
    if (!a) throw new AcmeProblem("accountDoesNotExist", "no account with that kid in this tenant");
    if (a.status !== "valid") throw unauthorized(`the account is ${a.status}`);
    return a;
  }

  /**
   * newAccount: returns the existing account of this key (created false), or creates one. With
   * `onlyReturnExisting` nothing is created. With an EAB required (or given), the binding must
   * be an HMAC JWS over this account key made with an unused key of this tenant.
   */
  async newAccount(u: AcmeUrls, jwk: JWK, payload: unknown, ip = ""): Promise<{ account: AccountRow; created: boolean }> {
    const t = this.tenant(u.tenant);
    const p = asObject(payload, "the newAccount payload");
    const thumbprint = await calculateJwkThumbprint(jwk, "sha256");
    const existing = await this.store.accountByThumbprint(u.tenant, thumbprint);
    if (existing) {
      if (existing.status !== "valid") throw unauthorized(`the account of this key is ${existing.status}`);
      return { account: existing, created: false };
    }
    if (p.onlyReturnExisting === true) throw new AcmeProblem("accountDoesNotExist", "no account exists with this key");
    if (p.termsOfServiceAgreed !== undefined && typeof p.termsOfServiceAgreed !== "boolean") throw malformed("termsOfServiceAgreed must be a boolean");
    if (this.config.terms_of_service && p.termsOfServiceAgreed !== true) throw unauthorized("the terms of service must be agreed to (termsOfServiceAgreed: true)");
    const contact = contacts(p.contact);
    if (ip) await this.rateLimit(u.tenant, [["ip-accounts", ip, this.config.rate_limits.accounts_per_ip]]);
    let eabKid: string | null = null;
    if (p.externalAccountBinding !== undefined) eabKid = await this.verifyEab(u, jwk, thumbprint, p.externalAccountBinding);
    else if (t.external_account_required) throw new AcmeProblem("externalAccountRequired", "this tenant requires an External Account Binding (ask its administrator for a key id and HMAC key)");
    const row: AccountRow = { id: timeOrderedId(), tenant: u.tenant, thumbprint, jwk: JSON.stringify(publicJwk(jwk)), status: "valid", contact: JSON.stringify(contact), eab_kid: eabKid, created_at: new Date().toISOString() };
    try {
      if (!(await this.store.insertAccount(row))) throw unauthorized("the external account key is already bound to another account");
    } catch (e) {
      // The same key registered concurrently: answer with the account that won.
      const again = e instanceof AcmeProblem ? undefined : await this.store.accountByThumbprint(u.tenant, thumbprint);
      if (again) return { account: again, created: false };
      throw e;
    }
    return { account: row, created: true };
  }

  /** Checks an External Account Binding (RFC 8555 §7.3.4); returns its key id. */
  private async verifyEab(u: AcmeUrls, jwk: JWK, thumbprint: string, binding: unknown): Promise<string> {
    const { jws, header } = readJws(binding, "externalAccountBinding");
    if (typeof header.alg !== "string" || !["HS256", "HS384", "HS512"].includes(header.alg)) throw new AcmeProblem("badSignatureAlgorithm", "externalAccountBinding must be signed with HS256, HS384 or HS512");
    if (header.nonce !== undefined) throw malformed("externalAccountBinding must not carry a nonce");
    if (header.url !== u.newAccount()) throw unauthorized("externalAccountBinding's url is not the newAccount URL");
    if (typeof header.kid !== "string" || header.kid.length > 128) throw malformed("externalAccountBinding needs a kid");
    const key = await this.store.eabKey(u.tenant, header.kid);
    if (!key) throw unauthorized("unknown external account key id");
    if (key.account_id !== null) throw unauthorized("the external account key is already bound to another account");
    const hmac = await this.protector.decrypt(key.hmac_sealed, eabContext(u.tenant, key.kid));
    let payload: Uint8Array;
    try {
      payload = (await flattenedVerify(jws, hmac, { algorithms: [header.alg] })).payload;
    } catch {
      throw unauthorized("externalAccountBinding's MAC does not verify");
    }
    let inner: JWK;
    try {
      inner = JSON.parse(new TextDecoder().decode(payload));
      if ((await calculateJwkThumbprint(inner, "sha256")) !== thumbprint) throw new Error("other key");
    } catch {
      throw unauthorized("externalAccountBinding does not bind this account key");
    }
    return key.kid;
  }

  /** Account update: contact, or `status: deactivated` (final). */
  async updateAccount(tenant: string, account: AccountRow, payload: unknown): Promise<AccountRow> {
    const p = asObject(payload ?? {}, "the account update");
    const patch: Partial<Pick<AccountRow, "status" | "contact">> = {};
    if (p.status !== undefined) {
      if (p.status !== "deactivated") throw malformed("an account's status can only be changed to deactivated");
      patch.status = "deactivated";
    }
    if (p.contact !== undefined) patch.contact = JSON.stringify(contacts(p.contact));
    if (Object.keys(patch).length) await this.store.updateAccount(tenant, account.id, patch);
    return { ...account, ...patch };
  }

  /**
   * Key rollover (RFC 8555 §7.3.5): `payload` is the inner JWS, signed by the new key (its `jwk`),
   * for the same URL, without a nonce, over `{account, oldKey}` naming this account and its
   * current key. A new key another account of the tenant holds is a conflict (409, its Location).
   */
  async keyChange(u: AcmeUrls, account: AccountRow, outerUrl: string, payload: unknown): Promise<AccountRow> {
    const { jws, header } = readJws(payload, "the keyChange inner JWS");
    if (typeof header.alg !== "string" || !["ES256", "ES384", "RS256", "PS256", "EdDSA"].includes(header.alg)) throw new AcmeProblem("badSignatureAlgorithm", "the inner JWS's alg must be ES256, ES384, RS256, PS256 or EdDSA");
    if (header.nonce !== undefined) throw malformed("the inner JWS must not carry a nonce");
    if (header.url !== outerUrl) throw malformed("the inner JWS's url must be the keyChange URL");
    const raw = header.jwk as JWK | undefined;
    if (!raw || typeof raw !== "object" || Array.isArray(raw) || raw.kty === "oct" || "d" in raw || "kid" in header) throw new AcmeProblem("badPublicKey", "the inner JWS must carry the new public key as jwk");
    const newJwk = publicJwk(raw);
    let inner: Record<string, unknown>;
    try {
      const key = await importJWK(newJwk, header.alg);
      inner = asObject(JSON.parse(new TextDecoder().decode((await flattenedVerify(jws, key, { algorithms: [header.alg] })).payload)), "the inner payload");
    } catch (e) {
      if (e instanceof AcmeProblem) throw e;
      throw malformed("the inner JWS does not verify with its jwk");
    }
    if (inner.account !== u.account(account.id)) throw malformed("the inner payload's account is not the signing account");
    let oldThumbprint = "";
    try {
      oldThumbprint = await calculateJwkThumbprint(inner.oldKey as JWK, "sha256");
    } catch {
      throw malformed("oldKey must be the account's current public key (a JWK)");
    }
    if (oldThumbprint !== account.thumbprint) throw unauthorized("oldKey is not the account's current key");
    const thumbprint = await calculateJwkThumbprint(newJwk, "sha256");
    const holder = await this.store.accountByThumbprint(u.tenant, thumbprint);
    const conflict = (id: string) => new AcmeProblem("malformed", "the new key is already the key of an account", { status: 409, headers: { location: u.account(id) } });
    if (holder) throw conflict(holder.id);
    if (!(await this.store.changeAccountKey(u.tenant, account.id, JSON.stringify(newJwk), thumbprint))) {
      const again = await this.store.accountByThumbprint(u.tenant, thumbprint);
      if (again) throw conflict(again.id);
      throw unauthorized("the account is no longer valid");
    }
    return { ...account, jwk: JSON.stringify(newJwk), thumbprint };
  }

  accountView(u: AcmeUrls, a: AccountRow): Record<string, unknown> {
    const out: Record<string, unknown> = { status: a.status, contact: JSON.parse(a.contact), orders: u.orders(a.id), createdAt: a.created_at };
    if (a.eab_kid) out.externalAccountBinding = { kid: a.eab_kid };
    return out;
  }

  async ordersList(u: AcmeUrls, a: AccountRow): Promise<Record<string, unknown>> {
    return { orders: (await this.store.ordersOf(u.tenant, a.id, 1000)).map((o) => u.order(o.id)) };
  }

  // --- External Account Binding keys (admin API) ---

  /** A new EAB key for the tenant: the HMAC key is returned once and stored only barrier-encrypted. */
  async createEabKey(tenant: string): Promise<{ kid: string; hmac_key: string; created_at: string }> {
    const kid = `eab_${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url")}`;
    const hmac = crypto.getRandomValues(new Uint8Array(32));
    const created_at = new Date().toISOString();
    await this.store.insertEabKey({ kid, tenant, hmac_sealed: await this.protector.encrypt(hmac, eabContext(tenant, kid)), account_id: null, created_at, bound_at: null });
    return { kid, hmac_key: Buffer.from(hmac).toString("base64url"), created_at };
  }

  // --- orders ---

  async newOrder(u: AcmeUrls, account: AccountRow, payload: unknown): Promise<OrderState> {
    const t = this.tenant(u.tenant);
    const p = asObject(payload, "the newOrder payload");
    if (p.profile !== undefined && (typeof p.profile !== "string" || !t.profiles.includes(p.profile))) throw malformed(`profile must be one of ${t.profiles.join(", ")}`);
    const profileName = (p.profile as string | undefined) ?? t.profiles[0]!;
    const identifiers = this.identifiers(p.identifiers);
    const subproblems: NonNullable<AcmeProblem["subproblems"]> = [];
    const profile = this.ca.profile(profileName);
    const validity = this.requestedValidity(profileName, p.notBefore, p.notAfter);
    for (const id of identifiers) {
      const reasons = nameReasons(profile, id.type === "dns" ? [id.value] : [], id.type === "ip" ? [id.value] : []);
      if (reasons.length) subproblems.push({ type: "rejectedIdentifier", detail: reasons.map((r) => r.message).join("; "), identifier: id });
      else if (id.type === "ip" && !this.config.allow_private_addresses && isNonPublicAddress(id.value)) {
        subproblems.push({ type: "rejectedIdentifier", detail: `${id.value} is a non-public address, which this CA does not validate`, identifier: id });
      }
    }
    if (subproblems.length) throw new AcmeProblem("rejectedIdentifier", `the profile ${profileName} refuses ${subproblems.length === 1 ? "an identifier" : "identifiers"}`, { subproblems });
    const replaces = p.replaces === undefined ? null : await this.checkReplaces(u.tenant, account, p.replaces, identifiers);
    const limits = this.config.rate_limits;
    // Counted when the order is stored (same commit).
    const events = await this.rateLimit(
      u.tenant,
      [["account-orders", account.id, limits.orders_per_account], ...identifiers.map((id) => ["identifier-orders", identifierKey(id), limits.orders_per_identifier] as const)],
      false,
    );
    const now = new Date();
    let expires = new Date(now.getTime() + this.config.order_lifetime_hours * HOUR_MS).toISOString();
    // Reused: the account's live authorization for an identifier (valid, or pending for another
    // order); the order then expires no later than the first of them.
    const reused: AuthorizationRow[] = [];
    const fresh: Identifier[] = [];
    for (const id of identifiers) {
      const live = await this.store.reusableAuthorization(u.tenant, account.id, id.type, id.value.replace(/^\*\./, ""), id.value.startsWith("*.") ? 1 : 0, now.toISOString());
      if (live) reused.push(live);
      else fresh.push(id);
    }
    for (const a of reused) if (a.expires < expires) expires = a.expires;
    const order: OrderRow = { id: timeOrderedId(), tenant: u.tenant, account_id: account.id, status: "pending", identifiers: JSON.stringify(identifiers), profile: profileName, expires, error: null, request_id: null, serial: null, created_at: now.toISOString(), replaces, not_before: validity.notBefore, not_after: validity.notAfter };
    const authzs: AuthorizationRow[] = fresh.map((id) => ({
      id: timeOrderedId(),
      tenant: u.tenant,
      account_id: account.id,
      order_id: order.id,
      identifier_type: id.type,
      identifier_value: id.value.replace(/^\*\./, ""),
      wildcard: id.value.startsWith("*.") ? 1 : 0,
      status: "pending",
      expires,
      token: randomToken(),
      challenge_status: "pending",
      challenge_type: null,
      validated_at: null,
      error: null,
    }));
    await this.store.insertOrder(order, authzs, events, reused.map((a) => a.id));
    return { ...order, authorizationIds: [...authzs, ...reused].map((a) => a.id) };
  }

  /**
   * newOrder's `notBefore`/`notAfter` (RFC 3339 times, each optional): the certificate's validity
   * when the profile allows it: issued without approval, notAfter after notBefore and in the
   * future, notBefore not in the past (beyond a minute's clock skew) nor later than the profile's
   * maximum validity from now, the span within that maximum. Malformed otherwise.
   */
  private requestedValidity(profileName: string, notBefore: unknown, notAfter: unknown): { notBefore: string | null; notAfter: string | null } {
    if (notBefore === undefined && notAfter === undefined) return { notBefore: null, notAfter: null };
    const profile = this.ca.profile(profileName);
    if (profile.approval === "manual") throw malformed(`the profile ${profileName} does not allow notBefore or notAfter (its requests wait for approval)`);
    const time = (v: unknown, name: string): number | undefined => {
      if (v === undefined) return undefined;
      const t = typeof v === "string" && RFC3339.test(v) ? Date.parse(v) : NaN;
      if (!Number.isFinite(t)) throw malformed(`${name} must be an RFC 3339 date-time`);
      return Math.floor(t / 1000) * 1000;
    };
    const now = Date.now();
    const maxMs = profile.max_validity_days * DAY_MS;
    const nb = time(notBefore, "notBefore");
    const na = time(notAfter, "notAfter");
    if (nb !== undefined && nb < now - VALIDITY_SKEW_MS) throw malformed("notBefore must not be in the past");
    if (nb !== undefined && nb > now + maxMs) throw malformed(`notBefore must be within ${profile.max_validity_days} days from now`);
    if (na !== undefined && na <= Math.max(now, nb ?? now)) throw malformed("notAfter must be later than notBefore and than now");
    const start = nb ?? now;
    const end = na ?? start + profile.default_validity_days * DAY_MS;
    if (end - start > maxMs) throw malformed(`the requested validity exceeds the profile ${profileName}'s maximum of ${profile.max_validity_days} days`);
    return { notBefore: nb === undefined ? null : new Date(nb).toISOString(), notAfter: na === undefined ? null : new Date(na).toISOString() };
  }

  /**
   * Rate limits (`rate_limits`): each [kind, subject, limit] must have fewer than `limit` events in
   * its window, counted in the database (so across instances); then one event of each is recorded.
   * Refused: rateLimited with Retry-After (when the oldest counted event leaves the window).
   */
  private async rateLimit(tenant: string, checks: ReadonlyArray<readonly [RateKind, string, { limit: number; window_seconds: number }]>, record = true): Promise<Array<{ tenant: string; kind: RateKind; subject: string; at: number }>> {
    const now = Date.now();
    const active = checks.filter(([, , l]) => l.limit > 0);
    for (const [kind, subject, l] of active) {
      const windowMs = l.window_seconds * 1000;
      const events = await this.store.rateEvents(tenant, kind, subject, now - windowMs, l.limit);
      if (events.length >= l.limit) {
        const retry = Math.max(1, Math.ceil((events[0]! + windowMs - now) / 1000));
        throw new AcmeProblem("rateLimited", `too many ${kind.replace("-", " per ")}: at most ${l.limit} in ${l.window_seconds} s`, { headers: { "retry-after": String(retry) } });
      }
    }
    const events = active.map(([kind, subject]) => ({ tenant, kind, subject, at: now }));
    if (record) await this.store.recordRate(events);
    if (now - this.lastRatePrune > RATE_PRUNE_MS) {
      this.lastRatePrune = now;
      const l = this.config.rate_limits;
      await this.store.pruneRates(now - 1000 * Math.max(l.orders_per_account.window_seconds, l.orders_per_identifier.window_seconds, l.accounts_per_ip.window_seconds));
    }
    return events;
  }

  /** Checks and normalizes newOrder identifiers: DNS names (lowercase; a wildcard `*.` only as the first label) and IP addresses. */
  private identifiers(raw: unknown): Identifier[] {
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_IDENTIFIERS) throw malformed(`identifiers must be an array of 1 to ${MAX_IDENTIFIERS} identifiers`);
    const out = new Map<string, Identifier>();
    for (const item of raw) {
      const i = asObject(item, "an identifier");
      if (typeof i.value !== "string" || i.value.length === 0 || i.value.length > 253) throw malformed("an identifier's value must be a string of 1 to 253 characters");
      let id: Identifier;
      if (i.type === "dns") {
        const value = i.value.toLowerCase().replace(/\.$/, "");
        const base = value.startsWith("*.") ? value.slice(2) : value;
        if (!DNS_NAME.test(base) || ipBytes(base) || (base !== value && !base.includes("."))) throw new AcmeProblem("rejectedIdentifier", `${value.slice(0, 253)} is not a DNS name`);
        id = { type: "dns", value };
      } else if (i.type === "ip") {
        if (!ipBytes(i.value)) throw new AcmeProblem("rejectedIdentifier", `${i.value.slice(0, 64)} is not an IP address`);
        id = { type: "ip", value: i.value.toLowerCase() };
      } else throw new AcmeProblem("unsupportedIdentifier", "identifiers are of type dns or ip");
      out.set(identifierKey(id), id);
    }
    return [...out.values()];
  }

  /** An order of the account, its status brought up to date (authorizations, expiry, a queued RA request). */
  async order(tenant: string, account: AccountRow, id: string): Promise<OrderState> {
    const o = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? await this.store.order(tenant, id) : undefined;
    if (!o || o.account_id !== account.id) throw malformed("no such order for this account", 404);
    return this.refresh(o);
  }

  private async refresh(row: OrderRow): Promise<OrderState> {
    const expired = Date.parse(row.expires) <= Date.now();
    let o: OrderState = row;
    if (o.status === "pending") {
      const authorizationIds = await this.store.authorizationIdsOf(o.tenant, o.id);
      o = { ...o, authorizationIds };
      const authzs = await this.store.authorizationsByIds(o.tenant, authorizationIds);
      const failed = authzs.find((a) => a.status === "invalid" || a.status === "deactivated");
      const ready = !failed && authzs.every((a) => a.status === "valid");
      // Ready is derived from the authorizations each time, not stored: finalize's claim checks
      // them again in its UPDATE (see AcmeStore.claimForFinalize).
      if (!failed && !expired) return ready ? { ...o, status: "ready" } : o;
      const next: Partial<OrderRow> = failed
        ? { status: "invalid", error: JSON.stringify(new AcmeProblem("unauthorized", `the authorization for ${failed.identifier_value} is ${failed.status}`).toJSON()) }
        : { status: "invalid", error: JSON.stringify(malformed(`the order expired before it was ${ready ? "finalized" : "ready"}`).toJSON()) };
      // Derived from the authorizations and the clock: derived again if a crash loses it.
      if (await this.store.moveOrder(o.tenant, o.id, ["pending"], next, false)) return { ...o, ...next };
    } else if (o.status === "ready" && expired) {
      const next = { status: "invalid" as const, error: JSON.stringify(malformed("the order expired before it was finalized").toJSON()) };
      if (await this.store.moveOrder(o.tenant, o.id, ["ready"], next)) return { ...o, ...next };
    } else if (o.status === "processing" && o.request_id) {
      // A profile with manual approval: the RA request decides.
      const r = await this.ca.store.request(o.tenant, o.request_id);
      let next: Partial<OrderRow> | undefined;
      if (r?.status === "issued" && r.serial) next = { status: "valid", serial: r.serial };
      else if (r?.status === "rejected") next = { status: "invalid", error: JSON.stringify(unauthorized("the request was rejected by an approver").toJSON()) };
      if (next && (await this.store.moveOrder(o.tenant, o.id, ["processing"], next, false))) return { ...o, ...next };
    }
    return o;
  }

  async orderView(u: AcmeUrls, o: OrderState): Promise<Record<string, unknown>> {
    // Sorted here, so the list reads the same whichever way the ids came and on either engine.
    const authzIds = [...(o.authorizationIds ?? (await this.store.authorizationIdsOf(o.tenant, o.id)))].sort();
    const out: Record<string, unknown> = {
      status: o.status,
      expires: o.expires,
      identifiers: JSON.parse(o.identifiers),
      profile: o.profile,
      authorizations: authzIds.map((id) => u.authz(id)),
      finalize: u.finalize(o.id),
    };
    if (o.serial && o.status === "valid") out.certificate = u.certificate(o.serial);
    if (o.replaces) out.replaces = o.replaces;
    if (o.not_before) out.notBefore = o.not_before;
    if (o.not_after) out.notAfter = o.not_after;
    if (o.error) out.error = JSON.parse(o.error);
    return out;
  }

  // --- ARI (RFC 9773) ---

  /**
   * The certificate a certID names (`base64url(AKI keyIdentifier).base64url(serial)`), in this
   * tenant, issued by the CA whose key the AKI names; malformed (404 when unknown) otherwise.
   */
  private async certByCertId(tenant: string, certId: unknown): Promise<{ row: CertificateRow; cert: x509.X509Certificate }> {
    const m = typeof certId === "string" ? /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{1,64})$/.exec(certId) : null;
    if (!m) throw malformed("a certID is base64url(authorityKeyIdentifier).base64url(serialNumber)");
    const aki = Buffer.from(m[1]!, "base64url").toString("hex");
    const serialHex = Buffer.from(m[2]!, "base64url").toString("hex");
    // DER's canonical integer: a leading zero byte only before a byte with its high bit set (so one certID per certificate).
    if (!serialHex || (serialHex.startsWith("00") && serialHex.length > 2 && parseInt(serialHex.slice(2, 4), 16) < 0x80)) throw malformed("the certID's serial is not a DER INTEGER's content");
    const row = (await this.ca.store.certificate(tenant, serialHex.replace(/^0+(?=.)/, ""))) ?? (await this.ca.store.certificate(tenant, serialHex));
    const cert = row ? new x509.X509Certificate(row.cert_der.slice().buffer as ArrayBuffer) : undefined;
    const certAki = cert?.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId?.toLowerCase();
    if (!row || !cert || certAki !== aki) throw malformed("no certificate of this CA has that certID", 404);
    return { row, cert };
  }

  /**
   * renewalInfo: the window in which to renew. Normally the last third of the lifetime but its
   * last sixth; a revoked certificate gets a window already past (renew now); a window ending
   * after the issuing CA's own expiry is moved before it.
   */
  async renewalInfo(tenant: string, certId: string): Promise<{ suggestedWindow: { start: string; end: string }; explanationURL?: string }> {
    const { row } = await this.certByCertId(tenant, certId);
    const now = Date.now();
    const nb = Date.parse(row.not_before);
    const na = Date.parse(row.not_after);
    const life = Math.max(na - nb, 60_000);
    let start = na - life / 3;
    let end = na - life / 6;
    if (row.status === "revoked") {
      start = now - 2 * HOUR_MS;
      end = now - HOUR_MS;
    } else {
      const issuing = [...this.ca.hierarchy.issuing.values()].find((c) => c.id === row.ca_id);
      const issuerEnd = issuing ? issuing.cert.notAfter.getTime() : Infinity;
      if (end > issuerEnd - life / 6) {
        end = Math.max(now, issuerEnd - life / 6);
        start = Math.min(start, end - life / 12);
      }
    }
    const iso = (t: number) => new Date(Math.floor(t / 1000) * 1000).toISOString();
    return { suggestedWindow: { start: iso(start), end: iso(end) } };
  }

  /**
   * newOrder's `replaces` (RFC 9773 §5): the certificate must have been ordered by this account,
   * share an identifier with the new order, and not be replaced already by an order that is not
   * invalid (alreadyReplaced, 409). Returns the certID, kept on the order.
   */
  private async checkReplaces(tenant: string, account: AccountRow, certId: unknown, identifiers: Identifier[]): Promise<string> {
    const { row } = await this.certByCertId(tenant, certId);
    const o = await this.store.orderBySerial(tenant, row.serial);
    if (!o || o.account_id !== account.id) throw unauthorized("the certificate to replace was not ordered by this account");
    const old = new Set((JSON.parse(o.identifiers) as Identifier[]).map(identifierKey));
    if (!identifiers.some((i) => old.has(identifierKey(i)))) throw malformed("the new order shares no identifier with the certificate it replaces");
    if ((await this.store.replacing(tenant, certId as string)).length) throw new AcmeProblem("alreadyReplaced", "that certificate is already replaced by another order");
    return certId as string;
  }

  // --- authorizations and challenges ---

  async authorization(tenant: string, account: AccountRow, id: string): Promise<AuthorizationRow> {
    const a = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? await this.store.authorization(tenant, id) : undefined;
    if (!a || a.account_id !== account.id) throw malformed("no such authorization for this account", 404);
    if (a.status === "pending" && Date.parse(a.expires) <= Date.now()) return { ...a, status: "invalid" };
    return a;
  }

  /** Authorization update: only `status: deactivated` (RFC 8555 §7.5.2). */
  async deactivateAuthorization(tenant: string, account: AccountRow, id: string, payload: unknown): Promise<AuthorizationRow> {
    const p = asObject(payload, "the authorization update");
    if (p.status !== "deactivated") throw malformed("an authorization can only be changed to deactivated");
    const a = await this.authorization(tenant, account, id);
    await this.store.deactivateAuthorization(tenant, a.id);
    return (await this.store.authorization(tenant, a.id))!;
  }

  authorizationView(u: AcmeUrls, a: AuthorizationRow): Record<string, unknown> {
    const out: Record<string, unknown> = {
      identifier: { type: a.identifier_type, value: a.identifier_value },
      status: a.status,
      expires: a.expires,
      challenges: challengeTypes(a).map((type) => this.challengeView(u, a, type)),
    };
    if (a.wildcard) out.wildcard = true;
    return out;
  }

  /** One challenge of an authorization: the answered one carries the state; the others stay pending. */
  challengeView(u: AcmeUrls, a: AuthorizationRow, type: ChallengeType): Record<string, unknown> {
    const answered = a.challenge_type === type;
    const out: Record<string, unknown> = { type, url: u.challenge(a.id, type), status: answered ? a.challenge_status : "pending", token: a.token };
    if (answered && a.validated_at) out.validated = a.validated_at;
    if (answered && a.error) out.error = JSON.parse(a.error);
    return out;
  }

  /** The challenge type of a path segment, offered for this authorization (404 otherwise). */
  challengeType(a: AuthorizationRow, type: string): ChallengeType {
    const t = challengeTypes(a).find((c) => c === type);
    if (!t) throw malformed("no such challenge for this authorization", 404);
    return t;
  }

  /**
   * The client says a challenge is ready: the authorization's challenge moves to processing and
   * the validation authority checks it in the background; a repeat, or another challenge after
   * one was answered, answers the current state. The answer waits for the validation up to
   * `challenge_wait_ms` (as step-ca answers after validating): one that finishes within it is
   * answered valid or invalid, so the client's next poll finds the order decided; a slower one
   * is answered `processing` and goes on.
   */
  async respondToChallenge(u: AcmeUrls, account: AccountRow, id: string, type: string): Promise<AuthorizationRow> {
    const a = await this.authorization(u.tenant, account, id);
    const t = this.challengeType(a, type);
    if (a.status !== "pending" || a.challenge_status !== "pending") return a;
    // A claim: lost in a crash, the challenge is pending again and can be answered again.
    if (!(await this.store.moveAuthorization(u.tenant, a.id, ["pending"], { challenge_status: "processing", challenge_type: t }, false))) return (await this.store.authorization(u.tenant, a.id))!;
    // The account's stored thumbprint is RFC 7638's of its key, set with the key (newAccount, keyChange).
    const keyAuthorization = `${a.token}.${account.thumbprint}`;
    const run = this.validate(a, t, keyAuthorization, u.account(account.id)).catch((e) => void this.onValidationError(e));
    this.inFlight.add(run);
    void run.finally(() => this.inFlight.delete(run));
    const processing: AuthorizationRow = { ...a, challenge_status: "processing", challenge_type: t };
    const wait = this.config.challenge_wait_ms;
    if (wait === 0) return processing;
    let timer: unknown;
    const outcome = await Promise.race([run, new Promise<undefined>((r) => void (timer = setTimeout(r, wait)))]);
    clearTimeout(timer as Parameters<typeof clearTimeout>[0]);
    return outcome ? { ...processing, ...outcome } : processing;
  }

  /**
   * Validates, retrying what failed to connect or resolve (`validation_retries`, not a wrong
   * answer), then checks CAA for DNS names; records valid or invalid with the problem.
   */
  private async validate(a: AuthorizationRow, type: ChallengeType, keyAuthorization: string, accountUri: string): Promise<Partial<AuthorizationRow> | undefined> {
    try {
      const target = { type: a.identifier_type, value: a.identifier_value, token: a.token, keyAuthorization };
      for (let attempt = 0; ; attempt++) {
        try {
          await this.va.validate(type, target);
          break;
        } catch (e) {
          const retriable = e instanceof AcmeProblem && ["connection", "dns", "tls"].includes(e.type);
          if (!retriable || attempt >= this.config.validation_retries) throw e;
          await new Promise((r) => setTimeout(r, this.config.validation_retry_delay_ms * (attempt + 1)));
        }
      }
      if (a.identifier_type === "dns") await this.va.caa(a.identifier_value, a.wildcard === 1, { method: type, accountUri });
      const valid = { challenge_status: "valid", status: "valid", validated_at: new Date().toISOString(), expires: this.validUntil(a) } as const;
      return (await this.store.moveAuthorization(a.tenant, a.id, ["processing"], valid)) ? valid : undefined;
    } catch (e) {
      const problem = e instanceof AcmeProblem ? e : new AcmeProblem("connection", "the validation failed");
      const invalid = { challenge_status: "invalid", status: "invalid", error: JSON.stringify(problem.toJSON()) } as const;
      const moved = await this.store.moveAuthorization(a.tenant, a.id, ["processing"], invalid);
      if (!(e instanceof AcmeProblem)) throw e;
      return moved ? invalid : undefined;
    }
  }

  /** A validated authorization's expiry: `authorization_lifetime_hours` from now, never sooner than it was. */
  private validUntil(a: AuthorizationRow): string {
    const until = new Date(Date.now() + this.config.authorization_lifetime_hours * HOUR_MS).toISOString();
    return until > a.expires ? until : a.expires;
  }

  /** Waits for validations in progress (at stop), so none writes to a closed database. */
  async dispose(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  // --- finalize, download, revoke ---

  /**
   * Finalize: the order must be ready, the CSR must name exactly the order's identifiers; then
   * the RA decides under the order's profile (issued now, or queued for an approver).
   */
  async finalize(tenant: string, account: AccountRow, id: string, payload: unknown): Promise<OrderState> {
    const o = await this.order(tenant, account, id);
    if (o.status !== "ready") throw new AcmeProblem("orderNotReady", `the order is ${o.status}, not ready`);
    const p = asObject(payload, "the finalize payload");
    if (typeof p.csr !== "string" || p.csr.length > 32_768 || !/^[A-Za-z0-9_-]+$/.test(p.csr)) throw new AcmeProblem("badCSR", "csr must be the base64url DER of a PKCS#10 request");
    const der = new Uint8Array(Buffer.from(p.csr, "base64url"));
    let parsed: ParsedCsr;
    try {
      parsed = parseCsr(der);
    } catch {
      throw new AcmeProblem("badCSR", "the CSR is not a PKCS#10 request");
    }
    const want = new Set((JSON.parse(o.identifiers) as Identifier[]).map(identifierKey));
    const got = new Set([...effectiveDnsNames(parsed).map((d) => `dns:${d.toLowerCase()}`), ...parsed.ips.map((ip) => `ip:${ipBytes(ip) ? ipKey(ip) : ip}`)]);
    if (parsed.emails.length || parsed.uris.length || parsed.upns.length || got.size !== want.size || [...got].some((g) => !want.has(g))) {
      throw new AcmeProblem("badCSR", "the CSR's names differ from the order's identifiers");
    }
    // Claimed first, so two finalize requests cannot issue twice.
    // Committed, not awaited to disk: the issuance's own durable commit syncs it too.
    if (!(await this.store.claimForFinalize(tenant, o.id))) throw new AcmeProblem("orderNotReady", "the order is being finalized already");
    let outcome;
    try {
      const window = o.not_before || o.not_after ? { not_before: o.not_before ?? undefined, not_after: o.not_after ?? undefined } : undefined;
      outcome = await this.ca.submit(tenant, { csr: parsed, profile: o.profile, ...(window ? { window } : {}) }, { origin: "acme" });
    } catch (e) {
      const refused = e instanceof AppError && e.status < 500;
      // A CSR the RA refuses leaves the order ready for a better one; a fault of ours ends it.
      await this.store.moveOrder(tenant, o.id, ["processing"], refused ? { status: "ready" } : { status: "invalid", error: JSON.stringify(new AcmeProblem("serverInternal", "issuance failed").toJSON()) });
      if (refused) {
        const reasons = ((e.details as { reasons?: Array<{ message: string }> } | undefined)?.reasons ?? []).map((r) => r.message);
        throw new AcmeProblem("badCSR", reasons.length ? `the CSR is refused: ${reasons.join("; ")}` : `the CSR is refused: ${e.message}`);
      }
      throw e;
    }
    const next: Partial<OrderRow> = outcome.status === "issued" ? { status: "valid", serial: outcome.certificate.serial, request_id: outcome.request_id } : { request_id: outcome.request.id };
    await this.store.moveOrder(tenant, o.id, ["processing"], next);
    return { ...o, status: "processing", ...next };
  }

  /** The certificate of one of the account's orders, with its issuing CA (RFC 8555 §7.4.2). */
  async certificateChain(tenant: string, account: AccountRow, serial: string): Promise<string> {
    const o = /^[0-9a-f]{1,64}$/.test(serial) ? await this.store.orderBySerial(tenant, serial) : undefined;
    const cert = o && o.account_id === account.id ? await this.ca.store.certificate(tenant, serial) : undefined;
    if (!cert) throw malformed("no such certificate for this account", 404);
    const issuing = [...this.ca.hierarchy.issuing.values()].find((c) => c.id === cert.ca_id);
    return toPem("CERTIFICATE", cert.cert_der) + (issuing ? this.issuerPem(issuing.cert) : "");
  }

  /** An issuing CA's certificate in PEM, made once per certificate object (every download sends it). */
  private issuerPem(cert: x509.X509Certificate): string {
    let pem = this.issuerPems.get(cert);
    if (pem === undefined) this.issuerPems.set(cert, (pem = toPem("CERTIFICATE", cert.rawData)));
    return pem;
  }
  private readonly issuerPems = new WeakMap<x509.X509Certificate, string>();

  /**
   * revokeCert (RFC 8555 §7.6): by the account whose order issued the certificate, or by a JWS
   * made with the certificate's own key (that JWK and the JWS's alg). Revocation itself is PkiCa's (CRL, OCSP, webhook).
   */
  async revoke(tenant: string, signer: { account: AccountRow } | { jwk: JWK; alg: string }, payload: unknown): Promise<void> {
    const p = asObject(payload, "the revokeCert payload");
    if (typeof p.certificate !== "string" || p.certificate.length > 32_768 || !/^[A-Za-z0-9_-]+$/.test(p.certificate)) throw malformed("certificate must be the base64url DER of a certificate");
    let code = 0;
    if (p.reason !== undefined) {
      if (typeof p.reason !== "number" || !ACME_REASONS.has(p.reason)) throw new AcmeProblem("badRevocationReason", `reason must be one of ${[...ACME_REASONS.keys()].join(", ")}`);
      code = p.reason;
    }
    const der = new Uint8Array(Buffer.from(p.certificate, "base64url"));
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(der.slice().buffer as ArrayBuffer);
    } catch {
      throw malformed("certificate is not an X.509 certificate");
    }
    const serial = cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, "");
    const row = (await this.ca.store.certificate(tenant, serial)) ?? (await this.ca.store.certificate(tenant, cert.serialNumber.toLowerCase()));
    if (!row || Buffer.compare(Buffer.from(row.cert_der), Buffer.from(der)) !== 0) throw malformed("this CA did not issue that certificate in this tenant", 404);
    if ("account" in signer) {
      const o = await this.store.orderBySerial(tenant, row.serial);
      if (!o || o.account_id !== signer.account.id) throw unauthorized("this account did not order that certificate");
    } else {
      const key = (await importJWK(signer.jwk, signer.alg, { extractable: true })) as CryptoKey;
      const spki = new Uint8Array(await crypto.subtle.exportKey("spki", key));
      if (Buffer.compare(Buffer.from(spki), Buffer.from(cert.publicKey.rawData)) !== 0) throw unauthorized("the JWS is not signed with the certificate's key");
    }
    if (row.status === "revoked") throw new AcmeProblem("alreadyRevoked", "the certificate is already revoked");
    try {
      await this.ca.revoke(tenant, row.serial, ACME_REASONS.get(code)!);
    } catch (e) {
      if (e instanceof AppError && e.code === "conflict") throw new AcmeProblem("alreadyRevoked", "the certificate is already revoked");
      throw e;
    }
  }
}

/** Where an EAB key's ciphertext is bound (tenant and key id). */
const eabContext = (tenant: string, kid: string) => `acme_eab_keys/${tenant}/${kid}/hmac`;

function asObject(v: unknown, what: string): Record<string, unknown> {
  if (!v || typeof v !== "object" || Array.isArray(v)) throw malformed(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

/** A flattened JWS object (protected, payload, signature as strings; nothing unprotected). */
export function flattened(v: unknown, what = "the request"): FlattenedJWS {
  const o = asObject(v, what);
  const keys = Object.keys(o).sort().join(",");
  if (keys !== "payload,protected,signature" || typeof o.protected !== "string" || typeof o.payload !== "string" || typeof o.signature !== "string") {
    throw malformed(`${what} must be a flattened JWS with exactly protected, payload and signature`);
  }
  return o as unknown as FlattenedJWS;
}

/** A flattened JWS and its decoded protected header (malformed when either is unreadable). */
export function readJws(v: unknown, what = "the request"): { jws: FlattenedJWS; header: ProtectedHeaderParameters } {
  const jws = flattened(v, what);
  try {
    return { jws, header: decodeProtectedHeader(jws) as ProtectedHeaderParameters };
  } catch {
    throw malformed(`${what}: the protected header is not base64url JSON`);
  }
}

/** The public members of a JWK (what is stored and compared). */
export function publicJwk(jwk: JWK): JWK {
  const all = jwk as Record<string, unknown>;
  const pick = (names: string[]): JWK => Object.fromEntries(names.filter((n) => typeof all[n] === "string").map((n) => [n, all[n]]));
  if (jwk.kty === "EC") return pick(["kty", "crv", "x", "y"]);
  if (jwk.kty === "RSA") return pick(["kty", "n", "e"]);
  return pick(["kty", "crv", "x"]);
}

function contacts(raw: unknown): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length > MAX_CONTACTS) throw new AcmeProblem("invalidContact", `contact must be an array of at most ${MAX_CONTACTS} mailto: URLs`);
  for (const c of raw) {
    if (typeof c !== "string") throw new AcmeProblem("invalidContact", "a contact must be a string");
    if (!c.startsWith("mailto:")) throw new AcmeProblem("unsupportedContact", "only mailto: contacts are supported");
    if (!/^mailto:[^\s@,?]{1,64}@[A-Za-z0-9.-]{1,253}$/.test(c)) throw new AcmeProblem("invalidContact", "a contact must be mailto: with one address and no headers");
  }
  return raw as string[];
}
