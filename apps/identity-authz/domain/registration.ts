/**
 * Dynamic client registration (RFC 7591) and its management protocol (RFC 7592), off unless a
 * tenant admin turns it on (`PUT /tenants/{T}/registration`). The tenant decides the scopes a
 * registered client may ask for and the audiences it gets: a client registering itself never
 * gains more than that. Optionally registration needs an initial access token (256-bit, shown
 * once, stored as SHA-256). Each registered client gets a registration access token (same
 * handling) for reading, replacing and deleting its own registration at
 * `{issuer}/register/{client_id}`. Presented tokens are compared in constant time against the
 * stored hash. Metadata is validated as the admin API does (`Registry.check`) and refused with
 * the RFC 7591 codes `invalid_redirect_uri` and `invalid_client_metadata`.
 */
import * as v from "valibot";
import { CreateClient, type ClientView, type PutRegistrationSettingsInput } from "../../../schemas/identity-authz.ts";
import { AppError } from "../../../src/service/errors.ts";
import type { AuthzStore, RegistrationSettingsRow } from "../store.ts";
import type { KeyRing } from "./keys.ts";
import type { Registry } from "./registry.ts";
import { oauthError } from "./oauth-error.ts";
import { equalConstantTime, randomToken, sha256Hex } from "./crypto.ts";
import { DEVICE_GRANT } from "./tokens.ts";

interface SettingsDoc {
  scopes: string[];
  audiences: string[];
  require_initial_access_token: boolean;
}

export interface RegistrationSettingsView extends SettingsDoc {
  tenant: string;
  enabled: boolean;
  initial_access_token_issued: boolean;
  updated_at: string | null;
}

/** The auth methods a client may register itself with (the RFC 8705 ones need an admin). */
const SELF_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];
const SELF_GRANTS = ["authorization_code", "refresh_token", "client_credentials", DEVICE_GRANT];
/** Metadata this server understands; anything else is ignored (RFC 7591 §2). */
const ALGS = ["ES256", "RS256", "PS256", "EdDSA"];

const bad = (d: string) => oauthError("invalid_client_metadata", d);
const strings = (x: unknown, name: string): string[] | undefined => {
  if (x === undefined) return undefined;
  if (!Array.isArray(x) || x.length > 20 || !x.every((s) => typeof s === "string")) throw bad(`${name} must be an array of at most 20 strings`);
  return x as string[];
};
const str = (x: unknown, name: string, max: number): string | undefined => {
  if (x === undefined) return undefined;
  if (typeof x !== "string" || x.length > max) throw bad(`${name} must be a string of at most ${max} characters`);
  return x;
};
const bool = (x: unknown, name: string): boolean | undefined => {
  if (x === undefined) return undefined;
  if (typeof x !== "boolean") throw bad(`${name} must be true or false`);
  return x;
};

/** A redirect URI a client may register: https, or http on a loopback IP literal (RFC 8252 §7.3); no fragment. */
function redirectOk(u: string): boolean {
  if (!URL.canParse(u) || u.length > 2000) return false;
  const x = new URL(u);
  if (x.hash || x.username || x.password) return false;
  return x.protocol === "https:" || (x.protocol === "http:" && (x.hostname === "127.0.0.1" || x.hostname === "[::1]"));
}

export class DynamicRegistration {
  constructor(
    private readonly store: AuthzStore,
    private readonly registry: Registry,
    private readonly keys: KeyRing,
    private readonly issuer: (tenant: string) => string,
  ) {}

  private static view(tenant: string, row: RegistrationSettingsRow | undefined): RegistrationSettingsView {
    const doc: SettingsDoc = row ? (JSON.parse(row.doc) as SettingsDoc) : { scopes: ["openid", "profile", "email"], audiences: [], require_initial_access_token: false };
    return { tenant, enabled: !!row?.enabled, ...doc, initial_access_token_issued: !!row?.initial_token_hash, updated_at: row?.updated_at ?? null };
  }

  async settings(tenant: string): Promise<RegistrationSettingsView> {
    await this.registry.requireTenant(tenant);
    return DynamicRegistration.view(tenant, await this.store.getRegistrationSettings(tenant));
  }

  /** Whether registration is on for the tenant (discovery advertises the endpoint only then). */
  async enabled(tenant: string): Promise<boolean> {
    return !!(await this.store.getRegistrationSettings(tenant))?.enabled;
  }

  async putSettings(tenant: string, input: PutRegistrationSettingsInput): Promise<RegistrationSettingsView> {
    await this.registry.requireTenant(tenant);
    const doc: SettingsDoc = { scopes: [...new Set(input.scopes)], audiences: [...new Set(input.audiences)], require_initial_access_token: input.require_initial_access_token };
    await this.store.putRegistrationSettings({ tenant, enabled: input.enabled ? 1 : 0, doc: JSON.stringify(doc), initial_token_hash: null, updated_at: new Date().toISOString() }, true);
    return this.settings(tenant);
  }

  /** A new initial access token (the previous one stops working); shown once. */
  async newInitialToken(tenant: string): Promise<string> {
    const current = await this.settings(tenant);
    const token = randomToken(32);
    const { tenant: _, enabled, initial_access_token_issued: __, updated_at: ___, ...doc } = current;
    await this.store.putRegistrationSettings({ tenant, enabled: enabled ? 1 : 0, doc: JSON.stringify(doc), initial_token_hash: await sha256Hex(token), updated_at: new Date().toISOString() }, false);
    return token;
  }

  private static bearer(req: Request): string | undefined {
    const m = /^Bearer ([A-Za-z0-9_\-.~+/]{1,512}=*)$/i.exec(req.headers.get("authorization") ?? "");
    return m?.[1];
  }

  private static async tokenMatches(presented: string | undefined, hash: string | null | undefined): Promise<boolean> {
    if (!presented || !hash) return false;
    return equalConstantTime(await sha256Hex(presented), hash);
  }

  /** The settings of a tenant where registration is on; refused (403 `access_denied`) when off. */
  private async open(tenant: string): Promise<RegistrationSettingsView & { hash: string | null }> {
    const row = await this.store.getRegistrationSettings(tenant);
    if (!row?.enabled) throw new AppError("access_denied", "dynamic client registration is not enabled for this tenant", { status: 403 });
    return { ...DynamicRegistration.view(tenant, row), hash: row.initial_token_hash };
  }

  /** RFC 7591 metadata to a registration of this tenant. */
  private toClient(meta: unknown, s: SettingsDoc) {
    if (!meta || typeof meta !== "object" || Array.isArray(meta)) throw bad("the body must be a JSON object of client metadata");
    const m = meta as Record<string, unknown>;
    const redirectUris = strings(m.redirect_uris, "redirect_uris") ?? [];
    for (const u of redirectUris) if (!redirectOk(u)) throw oauthError("invalid_redirect_uri", "redirect URIs are https, or http on 127.0.0.1 or [::1], without a fragment");
    const postLogout = strings(m.post_logout_redirect_uris, "post_logout_redirect_uris") ?? [];
    for (const u of postLogout) if (!redirectOk(u)) throw bad("post_logout_redirect_uris are https, or http on a loopback address, without a fragment");
    const method = str(m.token_endpoint_auth_method, "token_endpoint_auth_method", 64) ?? "client_secret_basic";
    if (!SELF_AUTH_METHODS.includes(method)) throw bad(`token_endpoint_auth_method must be one of ${SELF_AUTH_METHODS.join(", ")}`);
    const grants = strings(m.grant_types, "grant_types") ?? ["authorization_code"];
    for (const g of grants) if (!SELF_GRANTS.includes(g)) throw bad(`grant type '${g.slice(0, 80)}' is not offered to registered clients`);
    const responseTypes = strings(m.response_types, "response_types") ?? (grants.includes("authorization_code") ? ["code"] : []);
    for (const r of responseTypes) if (r !== "code") throw bad("only response type 'code' is supported");
    // RFC 7591 §2.1: response_types and grant_types must agree.
    if (responseTypes.includes("code") !== grants.includes("authorization_code")) throw bad("response_types 'code' and grant type authorization_code go together");
    if (grants.includes("authorization_code") && redirectUris.length === 0) throw oauthError("invalid_redirect_uri", "authorization_code needs at least one redirect URI");
    if (grants.includes("refresh_token") && !grants.includes("authorization_code") && !grants.includes(DEVICE_GRANT)) throw bad("refresh_token needs authorization_code or the device grant");
    if (m.jwks !== undefined && m.jwks_uri !== undefined) throw bad("give jwks or jwks_uri, not both");
    const scopeStr = str(m.scope, "scope", 2000);
    const scopes = scopeStr === undefined ? s.scopes : [...new Set(scopeStr.split(" ").filter(Boolean))];
    for (const x of scopes) if (!s.scopes.includes(x)) throw bad(`scope '${x.slice(0, 80)}' may not be registered in this tenant`);
    const alg = str(m.id_token_signed_response_alg, "id_token_signed_response_alg", 16) ?? "ES256";
    if (!ALGS.includes(alg)) throw bad(`id_token_signed_response_alg must be one of ${ALGS.join(", ")}`);
    const input = {
      client_name: str(m.client_name, "client_name", 200) ?? "registered client",
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogout,
      grant_types: grants,
      scopes,
      audiences: s.audiences,
      token_endpoint_auth_method: method,
      jwks: m.jwks ?? null,
      jwks_uri: str(m.jwks_uri, "jwks_uri", 2000) ?? null,
      require_par: bool(m.require_pushed_authorization_requests, "require_pushed_authorization_requests") ?? false,
      dpop_bound_access_tokens: bool(m.dpop_bound_access_tokens, "dpop_bound_access_tokens") ?? false,
      id_token_signed_response_alg: alg,
      require_signed_request_object: bool(m.require_signed_request_object, "require_signed_request_object") ?? false,
      subject_type: str(m.subject_type, "subject_type", 16) ?? "public",
      sector_identifier_uri: str(m.sector_identifier_uri, "sector_identifier_uri", 2000) ?? null,
      request_uris: strings(m.request_uris, "request_uris") ?? [],
    };
    const r = v.safeParse(CreateClient, input);
    if (!r.success) {
      const path = r.issues[0].path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
      throw bad(`${path || "metadata"}: ${r.issues[0].message}`);
    }
    return r.output;
  }

  /** The RFC 7591 §3.2.1 answer: the registration as metadata, with the management credentials. */
  private answer(tenant: string, c: ClientView & { client_secret?: string | null }, registrationToken?: string) {
    const out: Record<string, unknown> = {
      client_id: c.client_id,
      client_id_issued_at: Math.floor(Date.parse(c.created_at) / 1000),
      client_name: c.client_name,
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris,
      grant_types: c.grant_types,
      response_types: c.grant_types.includes("authorization_code") ? ["code"] : [],
      token_endpoint_auth_method: c.token_endpoint_auth_method,
      scope: c.scopes.join(" "),
      id_token_signed_response_alg: c.id_token_signed_response_alg,
      require_pushed_authorization_requests: c.require_par,
      dpop_bound_access_tokens: c.dpop_bound_access_tokens,
      require_signed_request_object: c.require_signed_request_object,
      subject_type: c.subject_type,
      ...(c.sector_identifier_uri ? { sector_identifier_uri: c.sector_identifier_uri } : {}),
      ...(c.request_uris.length ? { request_uris: c.request_uris } : {}),
      ...(c.jwks ? { jwks: c.jwks } : {}),
      ...(c.jwks_uri ? { jwks_uri: c.jwks_uri } : {}),
      registration_client_uri: `${this.issuer(tenant)}/register/${c.client_id}`,
    };
    if (c.client_secret) Object.assign(out, { client_secret: c.client_secret, client_secret_expires_at: 0 });
    if (registrationToken) out.registration_access_token = registrationToken;
    return out;
  }

  private async checked<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      // The registry's own checks (jwks for private_key_jwt, public keys only, ...).
      if (e instanceof AppError && e.code === "validation_failed") throw bad(e.message);
      throw e;
    }
  }

  /** POST /register (RFC 7591 §3). */
  async register(tenant: string, req: Request, meta: unknown) {
    const s = await this.open(tenant);
    if (s.require_initial_access_token && !(await DynamicRegistration.tokenMatches(DynamicRegistration.bearer(req), s.hash))) {
      throw oauthError("invalid_token", "registration needs a valid initial access token", { "WWW-Authenticate": 'Bearer error="invalid_token"' });
    }
    const input = this.toClient(meta, s);
    const c = await this.checked(() => this.registry.createClient(tenant, input));
    await this.keys.signer(tenant, c.id_token_signed_response_alg);
    const token = randomToken(32);
    await this.store.setRegistrationToken(tenant, c.client_id, await sha256Hex(token));
    return this.answer(tenant, c, token);
  }

  /** The client a registration access token manages (RFC 7592 §2); 401 otherwise, whether or not the client exists. */
  private async managed(tenant: string, clientId: string, req: Request): Promise<ClientView> {
    await this.open(tenant);
    const hash = clientId.length <= 128 ? await this.store.registrationTokenHash(tenant, clientId) : undefined;
    const ok = await DynamicRegistration.tokenMatches(DynamicRegistration.bearer(req), hash);
    const c = ok ? await this.registry.client(tenant, clientId) : null;
    if (!c) throw oauthError("invalid_token", "the registration access token is not valid for this client", { "WWW-Authenticate": 'Bearer error="invalid_token"' });
    return c;
  }

  async read(tenant: string, clientId: string, req: Request) {
    return this.answer(tenant, await this.managed(tenant, clientId, req));
  }

  /** PUT (RFC 7592 §2.2): the metadata given replaces the registration; the secret stays. */
  async update(tenant: string, clientId: string, req: Request, meta: unknown) {
    await this.managed(tenant, clientId, req);
    const s = await this.open(tenant);
    const m = (meta && typeof meta === "object" && !Array.isArray(meta) ? meta : {}) as Record<string, unknown>;
    if (m.client_id !== clientId) throw bad("client_id must be given and match the registration");
    // RFC 7592 §2.2: the credentials and server-set values may be sent back; they change nothing.
    const { client_id: _, client_secret: __, registration_access_token: ___, registration_client_uri: ____, client_id_issued_at: _____, client_secret_expires_at: ______, ...rest } = m;
    const input = this.toClient(rest, s);
    const c = await this.checked(() => this.registry.updateClient(tenant, clientId, input));
    await this.keys.signer(tenant, c.id_token_signed_response_alg);
    return this.answer(tenant, c);
  }

  async remove(tenant: string, clientId: string, req: Request): Promise<void> {
    await this.managed(tenant, clientId, req);
    await this.registry.deleteClient(tenant, clientId);
  }
}
