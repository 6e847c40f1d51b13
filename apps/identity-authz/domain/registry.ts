/**
 * Tenants and their clients. Client secrets are 256-bit random values shown once
 * and stored as SHA-256 (enough for high-entropy secrets); checks are constant time.
 * Registrations are cached in memory for a few seconds (`registry_cache_s`): the token
 * endpoint is hot. Every change is published on the change feed, and each instance drops what
 * it cached of it on the notice (at once on PostgreSQL; see src/storage/change-feed.ts), so a
 * deleted client or a rotated secret stops working on every instance. Unknown tenants and
 * clients are not cached (one created on another instance works at once), and a secret that
 * does not match the cached registration is checked once more against the stored one (a secret
 * just rotated on another instance works at once).
 */
import { AppError, notFound } from "../../../src/service/errors.ts";
import { STANDARD_SCOPES, type ClientDoc, type ClientView, type CreateClientInput, type CreateTenantInput, type PutScopeInput, type UpdateClientInput } from "../../../schemas/identity-authz.ts";
import type { AuthzStore, ClientRow, TenantRow } from "../store.ts";
import type { ChangeFeed } from "../../../src/storage/change-feed.ts";
import { equalConstantTime, randomId, randomToken, sha256Hex } from "./crypto.ts";
import { subjectDnParses } from "./mtls-client-auth.ts";
import { redirectHosts } from "./pairwise.ts";

export interface RegisteredClient extends ClientView {
  secretHash: string | null;
}

/** The change-feed channel of registrations; payload: a `Change`. */
export const REGISTRY_CHANNEL = "identity-authz.registry";
type Change = { tenant: string; client_id?: string; scopes?: true };

/** The tls_client_auth names of a registration (RFC 8705 §2.1.2), set or not. */
export const TLS_CLIENT_AUTH_NAMES = ["tls_client_auth_subject_dn", "tls_client_auth_san_dns", "tls_client_auth_san_uri", "tls_client_auth_san_ip", "tls_client_auth_san_email"] as const;

/** Registrations stored before these fields existed read as not using them. */
const FIELD_DEFAULTS = {
  tls_client_auth_subject_dn: null,
  tls_client_auth_san_dns: null,
  tls_client_auth_san_uri: null,
  tls_client_auth_san_ip: null,
  tls_client_auth_san_email: null,
  tls_client_certificate_bound_access_tokens: false,
  access_token_format: "jwt",
  require_signed_request_object: false,
  subject_type: "public",
  sector_identifier_uri: null,
  backchannel_logout_uri: null,
  backchannel_logout_session_required: false,
  request_uris: [],
} satisfies Partial<ClientDoc>;

function check(doc: ClientDoc): void {
  const m = doc.token_endpoint_auth_method;
  if (m === "private_key_jwt" && !doc.jwks && !doc.jwks_uri) throw new AppError("validation_failed", "private_key_jwt needs jwks or jwks_uri");
  if (m === "self_signed_tls_client_auth" && !doc.jwks && !doc.jwks_uri) throw new AppError("validation_failed", "self_signed_tls_client_auth needs jwks or jwks_uri (the certificate's public key)");
  if (doc.access_token_format === "opaque" && doc.grant_types.some((g) => g !== "client_credentials")) {
    throw new AppError("validation_failed", "opaque access tokens are for client_credentials clients only");
  }
  if (m === "tls_client_auth") {
    const names = TLS_CLIENT_AUTH_NAMES.filter((k) => doc[k] !== null && doc[k] !== undefined);
    if (names.length !== 1) throw new AppError("validation_failed", "tls_client_auth needs exactly one of tls_client_auth_subject_dn, _san_dns, _san_uri, _san_ip, _san_email");
    if (doc.tls_client_auth_subject_dn && !subjectDnParses(doc.tls_client_auth_subject_dn)) throw new AppError("validation_failed", "tls_client_auth_subject_dn is not an RFC 4514 distinguished name");
  }
  if (doc.jwks && doc.jwks_uri) throw new AppError("validation_failed", "give jwks or jwks_uri, not both");
  if (doc.require_signed_request_object && !doc.jwks && !doc.jwks_uri) throw new AppError("validation_failed", "require_signed_request_object needs jwks or jwks_uri (the keys request objects are signed with)");
  if (doc.request_uris.length && !doc.jwks && !doc.jwks_uri) throw new AppError("validation_failed", "request_uris needs jwks or jwks_uri (the keys request objects are signed with)");
  if (m === "none" && doc.grant_types.includes("client_credentials")) {
    throw new AppError("validation_failed", "a public client (auth method none) cannot use client_credentials");
  }
  if (doc.grant_types.includes("authorization_code") && doc.redirect_uris.length === 0) {
    throw new AppError("validation_failed", "authorization_code needs at least one redirect URI");
  }
  // OIDC Core §8.1: one sector per pairwise client; several redirect hosts need a sector_identifier_uri.
  if (doc.subject_type === "pairwise" && !doc.sector_identifier_uri && redirectHosts(doc.redirect_uris).size > 1) {
    throw new AppError("validation_failed", "a pairwise client with redirect URIs on several hosts needs a sector_identifier_uri");
  }
  for (const k of doc.jwks?.keys ?? []) {
    if ("d" in k || "p" in k || "k" in k) throw new AppError("validation_failed", "jwks must hold public keys only");
  }
}

const clientKey = (tenant: string, clientId: string) => `${tenant}\0${clientId}`;

export class Registry {
  private readonly clients = new Map<string, { c: RegisteredClient; at: number }>();
  private readonly tenants = new Map<string, { t: TenantRow; at: number }>();
  private readonly scopes = new Map<string, { m: Map<string, string[]>; at: number }>();
  private readonly cacheMs: number;

  constructor(
    private readonly store: AuthzStore,
    private readonly changes: ChangeFeed,
    cacheS = 5,
    /** Fetches a `sector_identifier_uri` document (HTTPS, the service's CA bundle). */
    private readonly fetchJson?: (uri: string) => Promise<unknown>,
  ) {
    this.cacheMs = cacheS * 1000;
    changes.subscribe(REGISTRY_CHANNEL, (payload) => this.forget(payload), () => this.forgetAll());
  }

  /** Drops what a change notice names (a whole tenant when it names no client or scopes). */
  private forget(payload: string): void {
    let c: Change;
    try {
      c = JSON.parse(payload) as Change;
    } catch {
      return this.forgetAll();
    }
    if (c.client_id !== undefined) return void this.clients.delete(clientKey(c.tenant, c.client_id));
    this.scopes.delete(c.tenant);
    if (c.scopes) return;
    this.tenants.delete(c.tenant);
    for (const key of [...this.clients.keys()]) if (key.startsWith(`${c.tenant}\0`)) this.clients.delete(key);
  }

  private forgetAll(): void {
    this.clients.clear();
    this.tenants.clear();
    this.scopes.clear();
  }

  /** Forgets the change here at once, and tells the other instances. */
  private async changed(c: Change): Promise<void> {
    const payload = JSON.stringify(c);
    this.forget(payload);
    await this.changes.publish(REGISTRY_CHANNEL, payload);
  }

  async tenant(id: string): Promise<TenantRow | null> {
    const hit = this.tenants.get(id);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.t;
    const t = (await this.store.getTenant(id)) ?? null;
    if (!t) return null;
    if (this.tenants.size > 10_000) this.tenants.clear();
    this.tenants.set(id, { t, at: Date.now() });
    return t;
  }

  async requireTenant(id: string): Promise<TenantRow> {
    const t = await this.tenant(id);
    if (!t) throw notFound("tenant");
    return t;
  }

  async createTenant(input: CreateTenantInput): Promise<TenantRow> {
    const row = { id: input.id, display_name: input.display_name ?? input.id, created_at: new Date().toISOString() };
    if (!(await this.store.insertTenant(row))) throw new AppError("conflict", "tenant already exists");
    await this.changed({ tenant: row.id });
    return row;
  }

  /** Deletes a tenant with its clients, keys, grants, tokens and scopes. */
  async deleteTenant(id: string): Promise<void> {
    if (!(await this.store.deleteTenant(id))) throw notFound("tenant");
    await this.changed({ tenant: id });
  }

  listTenants() {
    return this.store.listTenants();
  }

  private toClient(row: ClientRow): RegisteredClient {
    return { ...FIELD_DEFAULTS, ...(JSON.parse(row.doc) as ClientDoc), tenant: row.tenant, client_id: row.client_id, created_at: row.created_at, updated_at: row.updated_at, secretHash: row.secret_hash };
  }

  static view(c: RegisteredClient): ClientView {
    const { secretHash: _, ...rest } = c;
    return rest;
  }

  async client(tenant: string, clientId: string, fresh = false): Promise<RegisteredClient | null> {
    if (clientId.length > 255 || clientId.includes("\u0000")) return null; // never a client id (Basic credentials are not form-checked)
    const key = clientKey(tenant, clientId);
    const hit = this.clients.get(key);
    if (hit && !fresh && Date.now() - hit.at < this.cacheMs) return hit.c;
    const row = await this.store.getClient(tenant, clientId);
    if (!row) {
      this.clients.delete(key);
      return null;
    }
    const c = this.toClient(row);
    if (this.clients.size > 50_000) this.clients.clear();
    this.clients.set(key, { c, at: Date.now() });
    return c;
  }

  /**
   * The client, if `presented` is its secret: checked against the cached registration, then
   * once against the stored one (the secret may have been rotated through another instance).
   */
  async clientWithSecret(tenant: string, clientId: string, presented: string): Promise<RegisteredClient | null> {
    const cached = await this.client(tenant, clientId);
    if (cached && (await Registry.secretMatches(cached, presented))) return cached;
    const stored = cached ? await this.client(tenant, clientId, true) : null;
    return stored && stored.secretHash !== cached?.secretHash && (await Registry.secretMatches(stored, presented)) ? stored : null;
  }

  async requireClient(tenant: string, clientId: string): Promise<RegisteredClient> {
    const c = await this.client(tenant, clientId);
    if (!c) throw notFound("client");
    return c;
  }

  async listClients(tenant: string): Promise<ClientView[]> {
    await this.requireTenant(tenant);
    return (await this.store.listClients(tenant)).map((r) => Registry.view(this.toClient(r)));
  }

  /**
   * OIDC Core §8.1: a registered `sector_identifier_uri` is fetched and must be a JSON array that
   * holds every redirect URI of the client.
   */
  private async checkSector(doc: ClientDoc): Promise<void> {
    if (!doc.sector_identifier_uri) return;
    if (!this.fetchJson) throw new AppError("validation_failed", "sector_identifier_uri cannot be checked here");
    let list: unknown;
    try {
      list = await this.fetchJson(doc.sector_identifier_uri);
    } catch (e) {
      throw new AppError("validation_failed", `sector_identifier_uri could not be fetched: ${(e as Error).message.slice(0, 200)}`);
    }
    if (!Array.isArray(list) || !list.every((u) => typeof u === "string")) throw new AppError("validation_failed", "sector_identifier_uri must hold a JSON array of URIs");
    const missing = doc.redirect_uris.filter((u) => !list.includes(u));
    if (missing.length) throw new AppError("validation_failed", `sector_identifier_uri does not list the redirect URI ${missing[0]}`);
  }

  private static needsSecret(doc: ClientDoc) {
    return doc.token_endpoint_auth_method === "client_secret_basic" || doc.token_endpoint_auth_method === "client_secret_post";
  }

  /** Registers a client; returns the secret once (null for public and private_key_jwt clients). */
  async createClient(
    tenant: string,
    input: Omit<CreateClientInput, keyof typeof FIELD_DEFAULTS> & Partial<CreateClientInput>,
  ): Promise<ClientView & { client_secret: string | null }> {
    await this.requireTenant(tenant);
    const { client_id, ...given } = input;
    const doc: ClientDoc = { ...FIELD_DEFAULTS, ...given };
    check(doc);
    await this.checkSector(doc);
    const id = client_id ?? randomId(16);
    const secret = Registry.needsSecret(doc) ? randomToken(32) : null;
    const ts = new Date().toISOString();
    const row: ClientRow = { tenant, client_id: id, doc: JSON.stringify(doc), secret_hash: secret ? await sha256Hex(secret) : null, created_at: ts, updated_at: ts };
    if (!(await this.store.insertClient(row))) throw new AppError("conflict", "client already exists");
    await this.changed({ tenant, client_id: id });
    return { ...Registry.view(this.toClient(row)), client_secret: secret };
  }

  async updateClient(tenant: string, clientId: string, patch: UpdateClientInput): Promise<ClientView> {
    const current = await this.store.getClient(tenant, clientId);
    if (!current) throw notFound("client");
    const old = { ...FIELD_DEFAULTS, ...(JSON.parse(current.doc) as ClientDoc) };
    const doc: ClientDoc = { ...old, ...Object.fromEntries(Object.entries(patch).filter(([, x]) => x !== undefined)) };
    check(doc);
    await this.checkSector(doc);
    let secretHash = current.secret_hash;
    if (!Registry.needsSecret(doc)) secretHash = null;
    else if (!secretHash) throw new AppError("validation_failed", "switching to a secret method: rotate the secret with POST .../secret");
    const updated_at = new Date().toISOString();
    await this.store.updateClient(tenant, clientId, { doc: JSON.stringify(doc), secret_hash: secretHash, updated_at });
    await this.changed({ tenant, client_id: clientId });
    return Registry.view(this.toClient({ ...current, doc: JSON.stringify(doc), secret_hash: secretHash, updated_at }));
  }

  /** Issues a new secret (the old one stops working at once) and returns it once. */
  async rotateSecret(tenant: string, clientId: string): Promise<ClientView & { client_secret: string | null }> {
    const current = await this.store.getClient(tenant, clientId);
    if (!current) throw notFound("client");
    const secret = randomToken(32);
    const updated_at = new Date().toISOString();
    const doc = JSON.parse(current.doc) as ClientDoc;
    if (!Registry.needsSecret(doc)) doc.token_endpoint_auth_method = "client_secret_basic";
    await this.store.updateClient(tenant, clientId, { doc: JSON.stringify(doc), secret_hash: await sha256Hex(secret), updated_at });
    await this.changed({ tenant, client_id: clientId });
    return { ...Registry.view(this.toClient({ ...current, doc: JSON.stringify(doc), updated_at })), client_secret: secret };
  }

  async deleteClient(tenant: string, clientId: string): Promise<void> {
    if (!(await this.store.deleteClient(tenant, clientId))) throw notFound("client");
    await this.changed({ tenant, client_id: clientId });
  }

  /** Scope name -> released claims: the OIDC scopes plus the tenant's own. */
  async scopeClaims(tenant: string): Promise<Map<string, string[]>> {
    const hit = this.scopes.get(tenant);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.m;
    const m = new Map(Object.entries(STANDARD_SCOPES));
    for (const r of await this.store.listScopes(tenant)) m.set(r.name, JSON.parse(r.claims) as string[]);
    if (this.scopes.size > 10_000) this.scopes.clear();
    this.scopes.set(tenant, { m, at: Date.now() });
    return m;
  }

  async listScopes(tenant: string) {
    await this.requireTenant(tenant);
    const own = (await this.store.listScopes(tenant)).map((r) => ({ name: r.name, description: r.description, claims: JSON.parse(r.claims) as string[], standard: false }));
    const std = Object.entries(STANDARD_SCOPES).map(([name, claims]) => ({ name, description: "OpenID Connect", claims, standard: true }));
    return [...std, ...own];
  }

  async putScope(tenant: string, name: string, input: PutScopeInput) {
    await this.requireTenant(tenant);
    if (Object.hasOwn(STANDARD_SCOPES, name)) throw new AppError("conflict", "the OpenID Connect scopes cannot be redefined");
    const claims = [...new Set(input.claims)];
    await this.store.putScope({ tenant, name, description: input.description, claims: JSON.stringify(claims) });
    await this.changed({ tenant, scopes: true });
    return { name, description: input.description, claims, standard: false };
  }

  async deleteScope(tenant: string, name: string): Promise<void> {
    if (!(await this.store.deleteScope(tenant, name))) throw notFound("scope");
    await this.changed({ tenant, scopes: true });
  }

  /** Constant-time check of a presented secret against the stored hash. */
  static async secretMatches(c: RegisteredClient, presented: string): Promise<boolean> {
    if (!c.secretHash || presented.length > 512) return false;
    return equalConstantTime(await sha256Hex(presented), c.secretHash);
  }
}
