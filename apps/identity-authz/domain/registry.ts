/**
 * Tenants and their clients. Client secrets are 256-bit random values shown once
 * and stored as SHA-256 (enough for high-entropy secrets); checks are constant time.
 * Registrations are cached in memory for a few seconds: the token endpoint is hot.
 */
import { AppError, notFound } from "../../../src/service/errors.ts";
import { STANDARD_SCOPES, type ClientDoc, type ClientView, type CreateClientInput, type CreateTenantInput, type PutScopeInput, type UpdateClientInput } from "../../../schemas/identity-authz.ts";
import type { AuthzStore, ClientRow, TenantRow } from "../store.ts";
import { equalConstantTime, randomId, randomToken, sha256Hex } from "./crypto.ts";

export interface RegisteredClient extends ClientView {
  secretHash: string | null;
}

const CACHE_MS = 5_000;

function check(doc: ClientDoc): void {
  const m = doc.token_endpoint_auth_method;
  if (m === "private_key_jwt" && !doc.jwks && !doc.jwks_uri) throw new AppError("validation_failed", "private_key_jwt needs jwks or jwks_uri");
  if (doc.jwks && doc.jwks_uri) throw new AppError("validation_failed", "give jwks or jwks_uri, not both");
  if (m === "none" && doc.grant_types.includes("client_credentials")) {
    throw new AppError("validation_failed", "a public client (auth method none) cannot use client_credentials");
  }
  if (doc.grant_types.includes("authorization_code") && doc.redirect_uris.length === 0) {
    throw new AppError("validation_failed", "authorization_code needs at least one redirect URI");
  }
  for (const k of doc.jwks?.keys ?? []) {
    if ("d" in k || "p" in k || "k" in k) throw new AppError("validation_failed", "jwks must hold public keys only");
  }
}

export class Registry {
  private readonly clients = new Map<string, { c: RegisteredClient | null; at: number }>();
  private readonly tenants = new Map<string, { t: TenantRow | null; at: number }>();
  private readonly scopes = new Map<string, { m: Map<string, string[]>; at: number }>();

  constructor(private readonly store: AuthzStore) {}

  async tenant(id: string): Promise<TenantRow | null> {
    const hit = this.tenants.get(id);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.t;
    const t = (await this.store.getTenant(id)) ?? null;
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
    this.tenants.delete(row.id);
    return row;
  }

  /** Deletes a tenant with its clients, keys, grants, tokens and scopes. */
  async deleteTenant(id: string): Promise<void> {
    if (!(await this.store.deleteTenant(id))) throw notFound("tenant");
    this.tenants.delete(id);
    this.scopes.delete(id);
    for (const key of [...this.clients.keys()]) if (key.startsWith(`${id}\0`)) this.clients.delete(key);
  }

  listTenants() {
    return this.store.listTenants();
  }

  private toClient(row: ClientRow): RegisteredClient {
    return { ...(JSON.parse(row.doc) as ClientDoc), tenant: row.tenant, client_id: row.client_id, created_at: row.created_at, updated_at: row.updated_at, secretHash: row.secret_hash };
  }

  static view(c: RegisteredClient): ClientView {
    const { secretHash: _, ...rest } = c;
    return rest;
  }

  async client(tenant: string, clientId: string): Promise<RegisteredClient | null> {
    const key = `${tenant}\0${clientId}`;
    const hit = this.clients.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.c;
    const row = await this.store.getClient(tenant, clientId);
    const c = row ? this.toClient(row) : null;
    if (this.clients.size > 50_000) this.clients.clear();
    this.clients.set(key, { c, at: Date.now() });
    return c;
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

  private static needsSecret(doc: ClientDoc) {
    return doc.token_endpoint_auth_method === "client_secret_basic" || doc.token_endpoint_auth_method === "client_secret_post";
  }

  /** Registers a client; returns the secret once (null for public and private_key_jwt clients). */
  async createClient(tenant: string, input: CreateClientInput): Promise<ClientView & { client_secret: string | null }> {
    await this.requireTenant(tenant);
    const { client_id, ...doc } = input;
    check(doc);
    const id = client_id ?? randomId(16);
    const secret = Registry.needsSecret(doc) ? randomToken(32) : null;
    const ts = new Date().toISOString();
    const row: ClientRow = { tenant, client_id: id, doc: JSON.stringify(doc), secret_hash: secret ? await sha256Hex(secret) : null, created_at: ts, updated_at: ts };
    if (!(await this.store.insertClient(row))) throw new AppError("conflict", "client already exists");
    this.clients.delete(`${tenant}\0${id}`);
    return { ...Registry.view(this.toClient(row)), client_secret: secret };
  }

  async updateClient(tenant: string, clientId: string, patch: UpdateClientInput): Promise<ClientView> {
    const current = await this.store.getClient(tenant, clientId);
    if (!current) throw notFound("client");
    const old = JSON.parse(current.doc) as ClientDoc;
    const doc: ClientDoc = { ...old, ...Object.fromEntries(Object.entries(patch).filter(([, x]) => x !== undefined)) };
    check(doc);
    let secretHash = current.secret_hash;
    if (!Registry.needsSecret(doc)) secretHash = null;
    else if (!secretHash) throw new AppError("validation_failed", "switching to a secret method: rotate the secret with POST .../secret");
    const updated_at = new Date().toISOString();
    await this.store.updateClient(tenant, clientId, { doc: JSON.stringify(doc), secret_hash: secretHash, updated_at });
    this.clients.delete(`${tenant}\0${clientId}`);
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
    this.clients.delete(`${tenant}\0${clientId}`);
    return { ...Registry.view(this.toClient({ ...current, doc: JSON.stringify(doc), updated_at })), client_secret: secret };
  }

  async deleteClient(tenant: string, clientId: string): Promise<void> {
    if (!(await this.store.deleteClient(tenant, clientId))) throw notFound("client");
    this.clients.delete(`${tenant}\0${clientId}`);
  }

  /** Scope name -> released claims: the OIDC scopes plus the tenant's own. */
  async scopeClaims(tenant: string): Promise<Map<string, string[]>> {
    const hit = this.scopes.get(tenant);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.m;
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
    this.scopes.delete(tenant);
    return { name, description: input.description, claims, standard: false };
  }

  async deleteScope(tenant: string, name: string): Promise<void> {
    if (!(await this.store.deleteScope(tenant, name))) throw notFound("scope");
    this.scopes.delete(tenant);
  }

  /** Constant-time check of a presented secret against the stored hash. */
  static async secretMatches(c: RegisteredClient, presented: string): Promise<boolean> {
    if (!c.secretHash || presented.length > 512) return false;
    return equalConstantTime(await sha256Hex(presented), c.secretHash);
  }
}
