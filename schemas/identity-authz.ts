/** Request and response schemas of identity-authz's admin API, shared by its routes and its OpenAPI document. */
import * as v from "valibot";

export const TENANT_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const tenantId = v.pipe(v.string(), v.regex(TENANT_ID, "tenant ids are lowercase letters, digits and '-' (max 63)"));
const clientId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "client ids are letters, digits, '.', '_' and '-' (max 128)"));
const scopeToken = v.pipe(v.string(), v.regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, "a scope is one RFC 6749 scope token"));
/** Absolute https URL, or http on loopback (RFC 8252 native apps); never a fragment. */
export const redirectUri = v.pipe(
  v.string(),
  v.maxLength(2000),
  v.url(),
  // A pipe runs every action even after v.url() failed: this check must not assume a parsable URL.
  v.check((u) => {
    const x = URL.canParse(u) ? new URL(u) : undefined;
    return !!x && !x.hash && (x.protocol === "https:" || (x.protocol === "http:" && ["127.0.0.1", "[::1]", "localhost"].includes(x.hostname)));
  }, "redirect URIs are https (or http on loopback) without a fragment"),
);

/** A back-channel logout URI: absolute https, no fragment (OIDC Back-Channel Logout 1.0 §2.2). */
const backchannelUri = v.pipe(
  v.string(),
  v.maxLength(2000),
  v.url(),
  v.check((u) => {
    const x = URL.canParse(u) ? new URL(u) : undefined;
    return !!x && !x.hash && x.protocol === "https:";
  }, "the back-channel logout URI is https without a fragment"),
);

/**
 * A request_uri a client registers (OIDC Registration `request_uris`, RFC 9101 §5.2): absolute
 * https, at most 512 characters (OIDC Core §6.2); a fragment (the SHA-256 of the content, for
 * caches) is allowed and ignored when a request_uri is matched.
 */
const requestUri = v.pipe(
  v.string(),
  v.maxLength(512),
  v.url(),
  v.check((u) => URL.canParse(u) && new URL(u).protocol === "https:", "request URIs are https"),
);

export const AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth", "none"] as const;
/** The RFC 8705 methods: the client authenticates with its TLS certificate, on the mTLS endpoints only. */
export const MTLS_AUTH_METHODS: readonly string[] = ["tls_client_auth", "self_signed_tls_client_auth"];
export const GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"] as const;
export const SIGNING_ALGS = ["ES256", "RS256", "PS256", "EdDSA"] as const;

export const TenantParams = v.object({ tenant: tenantId });
export const ClientParams = v.object({ tenant: tenantId, client_id: clientId });

export const CreateTenant = v.strictObject({
  id: tenantId,
  display_name: v.optional(v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200))),
});

export const Tenant = v.object({ id: v.string(), display_name: v.string(), created_at: v.string() });
export const TenantList = v.object({ items: v.array(Tenant) });

const clientFields = {
  client_name: v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200)),
  redirect_uris: v.pipe(v.array(redirectUri), v.maxLength(20)),
  post_logout_redirect_uris: v.pipe(v.array(redirectUri), v.maxLength(20)),
  grant_types: v.pipe(v.array(v.picklist(GRANT_TYPES)), v.minLength(1)),
  /** Scopes the client may request. */
  scopes: v.pipe(v.array(scopeToken), v.maxLength(100)),
  /** Audiences (RFC 8707 `resource` values) the client may request; the first is the default. */
  audiences: v.pipe(v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(300))), v.maxLength(20)),
  token_endpoint_auth_method: v.picklist(AUTH_METHODS),
  /** The client's public keys for private_key_jwt, by value. */
  jwks: v.nullable(v.object({ keys: v.pipe(v.array(v.record(v.string(), v.unknown())), v.minLength(1), v.maxLength(10)) })),
  /** ... or by reference (https). */
  jwks_uri: v.nullable(v.pipe(v.string(), v.url(), v.startsWith("https://"))),
  require_par: v.boolean(),
  /** Access tokens must be DPoP-bound (RFC 9449). */
  dpop_bound_access_tokens: v.boolean(),
  id_token_signed_response_alg: v.picklist(SIGNING_ALGS),
  access_token_ttl_s: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(30), v.maxValue(86_400))),
  /**
   * tls_client_auth (RFC 8705 §2.1.2): the one name the client certificate must carry. Exactly
   * one of these is set for that method: the subject DN (RFC 4514, e.g. `CN=batch,O=Acme`),
   * or a DNS, URI, IP address or email SAN.
   */
  tls_client_auth_subject_dn: v.nullable(v.pipe(v.string(), v.minLength(1), v.maxLength(1000))),
  tls_client_auth_san_dns: v.nullable(v.pipe(v.string(), v.minLength(1), v.maxLength(253))),
  tls_client_auth_san_uri: v.nullable(v.pipe(v.string(), v.minLength(1), v.maxLength(2000), v.url())),
  tls_client_auth_san_ip: v.nullable(v.pipe(v.string(), v.ip())),
  tls_client_auth_san_email: v.nullable(v.pipe(v.string(), v.email(), v.maxLength(320))),
  /** Access tokens must be bound to the client certificate (RFC 8705 §3): issued on the mTLS endpoints only. */
  tls_client_certificate_bound_access_tokens: v.boolean(),
  /**
   * `jwt` (RFC 9068, verified locally by resource servers) or `opaque`: a random reference that
   * only introspection (RFC 7662) resolves, revocable at once; client_credentials clients only.
   */
  access_token_format: v.picklist(["jwt", "opaque"]),
  /** Authorization requests must come as a signed request object (RFC 9101), directly or through PAR. */
  require_signed_request_object: v.boolean(),
  /** OIDC Core §8: `pairwise` gives this client its own subject identifier for each user. */
  subject_type: v.picklist(["public", "pairwise"]),
  /** A pairwise client's sector (its host); the https JSON list of the client's redirect URIs (OIDC Core §8.1). */
  sector_identifier_uri: v.nullable(v.pipe(v.string(), v.maxLength(2000), v.url(), v.startsWith("https://"))),
  /** OIDC Back-Channel Logout 1.0: where logout tokens are POSTed when a user's session ends. */
  backchannel_logout_uri: v.nullable(backchannelUri),
  /** The client needs `sid` in logout tokens (always sent here, so this only records the client's wish). */
  backchannel_logout_session_required: v.boolean(),
  /** Where this client serves request objects by reference: the only `request_uri` values (besides PAR's) it may send. */
  request_uris: v.pipe(v.array(requestUri), v.maxLength(20)),
};

export const CreateClient = v.strictObject({
  client_id: v.optional(clientId),
  client_name: clientFields.client_name,
  redirect_uris: v.optional(clientFields.redirect_uris, []),
  post_logout_redirect_uris: v.optional(clientFields.post_logout_redirect_uris, []),
  grant_types: v.optional(clientFields.grant_types, ["client_credentials"]),
  scopes: v.optional(clientFields.scopes, []),
  audiences: v.optional(clientFields.audiences, []),
  token_endpoint_auth_method: v.optional(clientFields.token_endpoint_auth_method, "client_secret_basic"),
  jwks: v.optional(clientFields.jwks, null),
  jwks_uri: v.optional(clientFields.jwks_uri, null),
  require_par: v.optional(clientFields.require_par, false),
  dpop_bound_access_tokens: v.optional(clientFields.dpop_bound_access_tokens, false),
  id_token_signed_response_alg: v.optional(clientFields.id_token_signed_response_alg, "ES256"),
  access_token_ttl_s: v.optional(clientFields.access_token_ttl_s, null),
  tls_client_auth_subject_dn: v.optional(clientFields.tls_client_auth_subject_dn, null),
  tls_client_auth_san_dns: v.optional(clientFields.tls_client_auth_san_dns, null),
  tls_client_auth_san_uri: v.optional(clientFields.tls_client_auth_san_uri, null),
  tls_client_auth_san_ip: v.optional(clientFields.tls_client_auth_san_ip, null),
  tls_client_auth_san_email: v.optional(clientFields.tls_client_auth_san_email, null),
  tls_client_certificate_bound_access_tokens: v.optional(clientFields.tls_client_certificate_bound_access_tokens, false),
  access_token_format: v.optional(clientFields.access_token_format, "jwt"),
  require_signed_request_object: v.optional(clientFields.require_signed_request_object, false),
  subject_type: v.optional(clientFields.subject_type, "public"),
  sector_identifier_uri: v.optional(clientFields.sector_identifier_uri, null),
  backchannel_logout_uri: v.optional(clientFields.backchannel_logout_uri, null),
  backchannel_logout_session_required: v.optional(clientFields.backchannel_logout_session_required, false),
  request_uris: v.optional(clientFields.request_uris, []),
});

export const UpdateClient = v.strictObject(Object.fromEntries(Object.entries(clientFields).map(([k, s]) => [k, v.optional(s)])) as {
  [K in keyof typeof clientFields]: v.OptionalSchema<(typeof clientFields)[K], undefined>;
});

export const Client = v.object({
  tenant: v.string(),
  client_id: v.string(),
  ...clientFields,
  created_at: v.string(),
  updated_at: v.string(),
});
/** A client as returned once at creation or secret rotation: the only time the secret is shown. */
export const ClientWithSecret = v.object({ ...Client.entries, client_secret: v.nullable(v.string()) });
export const ClientList = v.object({ items: v.array(Client) });

const claimName = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/, "a claim name"));
/** The OIDC scopes and the claims they release; tenants cannot redefine them. */
export const STANDARD_SCOPES: Record<string, string[]> = {
  openid: [],
  offline_access: [],
  profile: ["name", "given_name", "family_name", "preferred_username", "locale", "zoneinfo", "updated_at"],
  email: ["email", "email_verified"],
};
export const ScopeParams = v.object({ tenant: tenantId, name: scopeToken });
export const PutScope = v.strictObject({
  description: v.optional(v.pipe(v.string(), v.maxLength(500)), ""),
  /** User claims (sent by the idp in the login verifier) this scope releases in ID tokens and userinfo. */
  claims: v.optional(v.pipe(v.array(claimName), v.maxLength(50)), []),
});
export const ScopeDefinition = v.object({ name: v.string(), description: v.string(), claims: v.array(v.string()), standard: v.boolean() });
export const ScopeList = v.object({ items: v.array(ScopeDefinition) });

export const RotateKeys = v.strictObject({ alg: v.optional(v.picklist(SIGNING_ALGS), "ES256") });
export const SigningKeyInfo = v.object({
  kid: v.string(),
  alg: v.string(),
  status: v.picklist(["current", "retired"]),
  created_at: v.number(),
  retired_at: v.nullable(v.number()),
  publish_until: v.nullable(v.number()),
});
export const SigningKeyList = v.object({ items: v.array(SigningKeyInfo) });

/** A user's grants: the subject is the user's id at identity-idp. */
export const SubjectParams = v.object({ tenant: tenantId, sub: v.pipe(v.string(), v.minLength(1), v.maxLength(255)) });
export const GrantParams = v.object({ tenant: tenantId, grant_id: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,64}$/, "a grant id")) });
/** A user's authorization at one client (its refresh tokens and the access tokens they issue). */
export const Grant = v.object({ id: v.string(), client_id: v.string(), scope: v.string(), created_at: v.number(), expires_at: v.number() });
export const GrantList = v.object({ items: v.array(Grant) });
/** The clients a user's idp sessions signed in to (back-channel logout reaches these). */
export const SessionClient = v.object({ sid: v.string(), client_id: v.string(), created_at: v.number() });
export const SessionClientList = v.object({ items: v.array(SessionClient) });

export type CreateTenantInput = v.InferOutput<typeof CreateTenant>;
export type CreateClientInput = v.InferOutput<typeof CreateClient>;
export type UpdateClientInput = v.InferOutput<typeof UpdateClient>;
export type ClientView = v.InferOutput<typeof Client>;
export type ClientDoc = Omit<ClientView, "tenant" | "client_id" | "created_at" | "updated_at">;
export type PutScopeInput = v.InferOutput<typeof PutScope>;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** Dynamic client registration (RFC 7591/7592) of a tenant: off unless enabled here. */
export const PutRegistrationSettings = v.strictObject({
  enabled: v.boolean(),
  /** The scopes a registered client may ask for (its `scope`; all of them when it names none). */
  scopes: v.optional(clientFields.scopes, ["openid", "profile", "email"]),
  /** The audiences every registered client gets. */
  audiences: v.optional(clientFields.audiences, []),
  /** Registration needs `Authorization: Bearer <initial access token>` (issue one with POST .../initial-access-token). */
  require_initial_access_token: v.optional(v.boolean(), false),
});
export const RegistrationSettings = v.object({
  tenant: v.string(),
  enabled: v.boolean(),
  scopes: v.array(v.string()),
  audiences: v.array(v.string()),
  require_initial_access_token: v.boolean(),
  /** Whether an initial access token has been issued (it is shown once, never again). */
  initial_access_token_issued: v.boolean(),
  updated_at: v.nullable(v.string()),
});
export const InitialAccessToken = v.object({ initial_access_token: v.string() });
export type PutRegistrationSettingsInput = v.InferOutput<typeof PutRegistrationSettings>;
