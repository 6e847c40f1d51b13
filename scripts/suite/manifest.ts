/**
 * What the launcher knows about the suite's services: the scopes each one's API checks, and
 * how each is wired to the others under `npm start` (the suite defaults, a config layer below
 * the operator's own files). A service started alone gets none of this.
 */
import { join } from "node:path";
import { serviceSpiffeId } from "../../src/auth/client-cert.ts";

import { SERVICE_SCOPES, scopesOf } from "../../schemas/scopes.ts";

export { SERVICE_SCOPES, scopesOf } from "../../schemas/scopes.ts";

export const DEMO_TENANT = "demo";
/** The audit service's mutual-TLS port, where the other services send their events. */
export const AUDIT_MTLS_PORT = 8801;
/** identity-idp's mutual-TLS port under `npm start`: sign-in with a client certificate. */
export const IDP_MTLS_PORT = 18101;
/** sm-kms's gRPC port under `npm start` (mutual TLS). */
export const KMS_GRPC_PORT = 8081;
/** The URI SAN of the demo tenant's gRPC client certificate, which sm-kms maps to the demo tenant. */
export const KMS_GRPC_DEMO_CLIENT = "spiffe://cryptoutil/demo/kms-grpc-client";
/** The services that serve a console (or, for sm-im, its messaging page) under /browser/, each signing users in through the demo tenant. */
export const CONSOLE_SERVICES = ["learn-ps", "sm-kms", "pki-ca", "jose-ja", "identity-authz", "identity-idp", "sm-im", "sm-secrets", "audit"];
/** The client a service's console signs users in with (authorization code + PKCE). */
export const consoleClient = (service: string) => `${service}-web`;
/** Where identity-authz sends a console's logout tokens (OIDC back-channel logout): ends its sessions of a signed-out user. */
export const consoleBackchannelLogout = (url: string) => `${url}/browser/backchannel-logout`;
/** What a console asks for: who the user is and every scope of its service. */
export const consoleScope = (service: string) => ["openid", "profile", ...(SERVICE_SCOPES[service] ?? [])].join(" ");
/** identity-rs's own client at identity-authz, for RFC 7662 introspection of opaque tokens. */
export const IDENTITY_RS_INTROSPECTION_CLIENT = "identity-rs-introspection";
/** identity-rp's confidential client (the backend-for-frontend) and identity-spa's public one. */
export const IDENTITY_RP_CLIENT = "identity-rp";
export const IDENTITY_SPA_CLIENT = "identity-spa";
/** What the relying party and the single-page app ask for: who the user is and identity-rs's scopes. */
export const NOTES_SCOPE = ["openid", "profile", ...(SERVICE_SCOPES["identity-rs"] ?? [])].join(" ");

export interface SuiteLayout {
  dataRoot: string;
  /** Public URL of every service in this run, from its own checked configuration. */
  urls: Record<string, string | undefined>;
  /** Whether the demo tenant exists for this run (development mode, identity-authz running). */
  demo: boolean;
}

/** Where the demo's generated secrets live: `<data>/demo/<name>`, files of mode 0600. */
export const demoFile = (dataRoot: string, name: string) => join(dataRoot, "demo", name);

/**
 * The suite defaults of one service: every service trusts the local identity-authz (a
 * per-tenant issuer, its JWKS, the suite CA), the identity services find each other, pki-ca
 * writes its own address into certificates, learn-ps signs browsers in through the demo
 * tenant, and when audit runs every other service sends it its security events: audit listens
 * on its mTLS port for the suite's client certificates, each service trusting the suite CA
 * through its own trust bundle.
 */
export function suiteDefaults(service: string, s: SuiteLayout): Record<string, unknown> {
  const authz = s.urls["identity-authz"];
  const out: Record<string, any> = {};
  if (authz && service !== "identity-authz") {
    out.auth = {
      issuer: `${authz}/t/{tenant}`,
      jwks_url: `${authz}/t/{tenant}/jwks`,
      ca_file: join(s.dataRoot, "identity-authz", "trust-bundle.pem"),
    };
  }
  if (authz && s.demo) {
    // The API explorer's "Test Request" gets a token for this service from the demo tenant.
    out.explorer = { token_url: `${authz}/t/${DEMO_TENANT}/token`, client_id: `demo-${service}` };
  }
  const idp = s.urls["identity-idp"];
  if (service === "identity-authz") {
    // The other services' explorers fetch tokens from this origin.
    const origins = Object.entries(s.urls)
      .filter(([name, url]) => name !== service && url)
      .map(([, url]) => new URL(url!).origin);
    // The suite's own services (their consoles' back-channel logout) are on loopback or private
    // addresses; clients' URLs elsewhere stay under the public-address rule.
    const own = Object.values(s.urls).flatMap((url) => (url ? [new URL(url).origin] : []));
    out.app = { ...(idp && { idp_url: idp }), cors_origins: [...new Set(origins)], client_urls_allowed_origins: [...new Set(own)] };
  }
  if (service === "identity-idp" && authz) out.app = { authz_url: authz };
  if (service === "identity-idp") {
    // Certificate sign-in: the mTLS port, trusting the client certificates of pki-ca's issuing CA,
    // which the idp fetches from pki-ca itself (pki-ca may be ready after the idp).
    out.server = { mtls_port: IDP_MTLS_PORT };
    const ca = s.urls["pki-ca"];
    if (ca) out.federation = { ...out.federation, ca: { url: ca, ca_file: join(s.dataRoot, service, "trust-bundle.pem") } };
  }
  const audit = s.urls.audit;
  if (audit && service === "audit") {
    out.server = { mtls_port: AUDIT_MTLS_PORT };
    out.mtls = {
      principals: Object.keys(s.urls)
        .filter((name) => name !== "audit")
        .map((name) => ({ uri: serviceSpiffeId(name), tenant: "root", subject: name, scopes: ["audit:ingest"] })),
    };
  } else if (audit) {
    const u = new URL(audit);
    u.port = String(AUDIT_MTLS_PORT);
    out.federation = { ...out.federation, audit: { url: u.origin, ca_file: join(s.dataRoot, service, "trust-bundle.pem") } };
  }
  if (service === "pki-ca" && s.urls["pki-ca"]) out.app = { base_url: s.urls["pki-ca"] };
  if (service === "identity-rs" && authz && s.demo) {
    out.app = {
      introspection: {
        endpoint: `${authz}/t/${DEMO_TENANT}/introspect`,
        client_id: IDENTITY_RS_INTROSPECTION_CLIENT,
        client_secret_file: demoFile(s.dataRoot, `${IDENTITY_RS_INTROSPECTION_CLIENT}.secret`),
      },
    };
  }
  if (service === "identity-rp" && authz && s.demo) {
    // The backend-for-frontend signs the demo tenant's users in and proxies /api/* to identity-rs;
    // identity-spa's pages may use its session (CORS with credentials) and come back after logout.
    const rs = s.urls["identity-rs"];
    const spa = s.urls["identity-spa"];
    out.app = {
      issuer: `${authz}/t/${DEMO_TENANT}`,
      client_id: IDENTITY_RP_CLIENT,
      client_secret_file: demoFile(s.dataRoot, `${IDENTITY_RP_CLIENT}.secret`),
      scope: NOTES_SCOPE,
      ...(rs && { api_url: `${rs}/service/api/v1` }),
      ...(spa && { frontend_origins: [new URL(spa).origin], post_logout_redirect_uri: `${spa}/` }),
    };
  }
  if (service === "identity-spa" && authz && s.demo) {
    // BFF mode through identity-rp; the public-client mode at the demo tenant, calling identity-rs.
    const rs = s.urls["identity-rs"];
    out.app = {
      ...(s.urls["identity-rp"] && { rp_url: s.urls["identity-rp"] }),
      issuer: `${authz}/t/${DEMO_TENANT}`,
      client_id: IDENTITY_SPA_CLIENT,
      scope: NOTES_SCOPE,
      ...(rs && { api_url: `${rs}/service/api/v1` }),
    };
  }
  if (service === "identity-rs" && authz && s.urls["identity-spa"]) {
    // identity-spa's public-client mode calls the API from its own origin with a DPoP-bound token.
    out.auth = { ...out.auth, cors_origins: [new URL(s.urls["identity-spa"]).origin] };
  }
  if (service === "sm-kms") {
    // The gRPC API; in the demo, a client certificate (written by the launcher) is the demo tenant.
    out.server = { grpc_port: KMS_GRPC_PORT };
    if (s.demo) out.mtls = { principals: [{ uri: KMS_GRPC_DEMO_CLIENT, tenant: DEMO_TENANT, subject: "demo-kms-grpc", scopes: scopesOf(["sm-kms"]) }] };
  }
  if (CONSOLE_SERVICES.includes(service) && authz && s.demo) {
    out.browser = {
      login: {
        issuer: `${authz}/t/${DEMO_TENANT}`,
        client_id: consoleClient(service),
        client_secret_file: demoFile(s.dataRoot, `${consoleClient(service)}.secret`),
        scope: consoleScope(service),
      },
      // The navigation bar of every console links the suite's consoles (single sign-on between them).
      consoles: CONSOLE_SERVICES.filter((c) => s.urls[c]).map((c) => ({ name: c, url: `${s.urls[c]}/browser/` })),
    };
  }
  return out;
}
