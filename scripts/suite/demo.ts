/**
 * The development tenant of `npm start`, made through the services' own admin APIs with the
 * bootstrap administrator's credential, as an operator would make it. Runs on every start and
 * converges: what exists is updated to the suite's current addresses, a secret whose file is
 * gone is rotated, and nothing is created twice. Never runs in production mode (the launcher
 * calls it only when identity-authz runs on the development unseal secret).
 *
 * Secrets go to `<data>/demo/*.secret` (mode 0600) and are never printed.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { CONSOLE_SERVICES, consoleBackchannelLogout, DEMO_TENANT, IDENTITY_RP_CLIENT, IDENTITY_SPA_CLIENT, IDENTITY_RS_INTROSPECTION_CLIENT, NOTES_SCOPE, KMS_GRPC_DEMO_CLIENT, SERVICE_SCOPES, consoleClient, consoleScope, demoFile, scopesOf } from "./manifest.ts";
import { DirectoryStore, issueLeaf, loadOrCreateSuiteCa, suiteCaSealerFromFiles, toPem } from "../../src/pki/index.ts";

export const DEMO_USER = "demo";
export const CLI_CLIENT = "demo-cli";
export const CLI_BROWSER_CLIENT = "cryptoutil-cli";
export const SUITE_ADMIN_CLIENT = "bootstrap-admin";

interface Api {
  (method: string, url: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: any }>;
}

function apiOver(ca: string): Api {
  return async (method, url, token, body) => {
    const res = await fetch(url, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      tls: { ca },
    } as RequestInit);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: kept as text for the error message
    }
    return { status: res.status, body: parsed };
  };
}

function fail(what: string, r: { status: number; body: any }): never {
  const e = r.body?.error;
  const detail = typeof e === "object" ? `${e.code}: ${e.message}` : typeof e === "string" ? `${e}: ${r.body.error_description ?? ""}` : String(r.body).slice(0, 200);
  throw new Error(`${what} failed (${r.status} ${detail})`);
}

/** Writes a secret file of mode 0600 (directory 0700). */
function writeSecret(path: string, value: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, value + "\n", { mode: 0o600 });
  chmodSync(path, 0o600);
}

const readSecret = (path: string) => readFileSync(path, "utf8").trim();

/** A client-credentials access token for `resource` from `{issuer}/token`. */
export async function clientToken(ca: string, issuer: string, clientId: string, secret: string, resource?: string): Promise<string> {
  const form = new URLSearchParams({ grant_type: "client_credentials" });
  if (resource) form.set("resource", resource);
  const res = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`)}`, "content-type": "application/x-www-form-urlencoded" },
    body: form,
    tls: { ca },
  } as RequestInit);
  const body = (await res.json().catch(() => ({}))) as { access_token?: string; error?: string; error_description?: string };
  if (!res.ok || !body.access_token) throw new Error(`token for ${clientId} at ${issuer} refused (${res.status} ${body.error ?? ""}: ${body.error_description ?? ""})`);
  return body.access_token;
}

export interface DemoInputs {
  dataRoot: string;
  ca: string;
  /** identity-authz's public URL. */
  authz: string;
  /** Public URLs of the services in this run. */
  urls: Record<string, string | undefined>;
  bootstrapSecretFile: string;
}

const audiencesOf = (urls: Record<string, unknown>) => ["identity-authz", ...Object.keys(urls).filter((s) => s !== "identity-authz")];

/**
 * The suite administrator (identity-authz's bootstrap client, tenant root): one credential for
 * every service's admin API: its token may name any service of the suite as `resource`, with
 * every scope. Returns its token for identity-authz, or undefined when its secret file is gone
 * (an operator who removed it keeps the client as it was).
 */
export async function provisionSuiteAdmin(d: DemoInputs): Promise<string | undefined> {
  if (!existsSync(d.bootstrapSecretFile)) return undefined;
  const audiences = audiencesOf(d.urls);
  const rootToken = await clientToken(d.ca, `${d.authz}/t/root`, SUITE_ADMIN_CLIENT, readSecret(d.bootstrapSecretFile));
  const widen = await apiOver(d.ca)("PATCH", `${d.authz}/service/api/v1/tenants/root/clients/${SUITE_ADMIN_CLIENT}`, rootToken, { audiences, scopes: scopesOf(audiences) });
  if (widen.status !== 200) fail("updating the suite administrator", widen);
  return rootToken;
}

/**
 * The demo tenant and its clients, made with the suite administrator's token. Call once
 * identity-authz is ready, before the other services start (learn-ps reads its client secret
 * at start).
 */
export async function provisionClients(d: DemoInputs, rootToken: string): Promise<void> {
  const api = apiOver(d.ca);
  const services = Object.keys(d.urls);
  const audiences = audiencesOf(d.urls);
  const admin = `${d.authz}/service/api/v1`;

  const tenant = await api("GET", `${admin}/tenants/${DEMO_TENANT}`, rootToken);
  if (tenant.status === 404) {
    const made = await api("POST", `${admin}/tenants`, rootToken, { id: DEMO_TENANT, display_name: "Demo tenant (development)" });
    if (made.status !== 201) fail("creating the demo tenant", made);
  } else if (tenant.status !== 200) fail("reading the demo tenant", tenant);

  const confidential = (client_name: string, aud: string[], scopes: string[]) => ({
    client_name,
    grant_types: ["client_credentials"],
    audiences: aud,
    scopes,
    token_endpoint_auth_method: "client_secret_basic",
  });
  const clients: Array<{ id: string; doc: Record<string, unknown>; secret: boolean }> = [
    // The CLI's operator: every scope of every service in the demo tenant.
    { id: CLI_CLIENT, doc: confidential("cryptoutil CLI (demo operator)", audiences, scopesOf(audiences)), secret: true },
    // One confidential client per service, with that service's audience and scopes.
    ...services
      .filter((s) => SERVICE_SCOPES[s])
      .map((s) => ({ id: `demo-${s}`, doc: confidential(`${s} client (demo)`, [s], SERVICE_SCOPES[s]!), secret: true })),
    // The CLI's browser login: a public native client on a loopback redirect (RFC 8252), or
    // the device grant (RFC 8628) on a machine without a display.
    {
      id: CLI_BROWSER_CLIENT,
      doc: {
        client_name: "cryptoutil CLI (browser login)",
        grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        redirect_uris: ["http://127.0.0.1/callback"],
        audiences,
        scopes: ["openid", "profile", "offline_access", ...scopesOf(audiences)],
        token_endpoint_auth_method: "none",
      },
      secret: false,
    },
  ];
  // Each console's browser login (a confidential client of the backend-for-frontend).
  for (const service of CONSOLE_SERVICES) {
    const url = d.urls[service];
    if (!url) continue;
    clients.push({
      id: consoleClient(service),
      doc: {
        client_name: `${service} console`,
        grant_types: ["authorization_code", "refresh_token"],
        redirect_uris: [`${url}/browser/callback`],
        post_logout_redirect_uris: [`${url}/browser/`],
        // Signing out of one console ends the user's session in every console.
        backchannel_logout_uri: consoleBackchannelLogout(url),
        backchannel_logout_session_required: true,
        audiences: [service],
        scopes: consoleScope(service).split(" "),
        token_endpoint_auth_method: "client_secret_basic",
      },
      secret: true,
    });
  }

  if (d.urls["identity-rs"]) {
    // identity-rs's own credential for introspecting opaque tokens: no scope, no audience.
    clients.push({ id: IDENTITY_RS_INTROSPECTION_CLIENT, doc: confidential("identity-rs (token introspection)", [], []), secret: true });
  }

  const rp = d.urls["identity-rp"];
  const spa = d.urls["identity-spa"];
  if (rp) {
    // The backend-for-frontend: confidential, pushed authorization requests only, tokens for identity-rs.
    clients.push({
      id: IDENTITY_RP_CLIENT,
      doc: {
        client_name: "identity-rp (backend-for-frontend)",
        grant_types: ["authorization_code", "refresh_token"],
        redirect_uris: [`${rp}/callback`],
        post_logout_redirect_uris: [`${rp}/`, ...(spa ? [`${spa}/`] : [])],
        audiences: ["identity-rs"],
        scopes: NOTES_SCOPE.split(" "),
        token_endpoint_auth_method: "client_secret_basic",
        require_par: true,
        // identity-authz tells identity-rp when a user's session at the idp ends (OIDC back-channel logout).
        backchannel_logout_uri: `${rp}/backchannel-logout`,
        backchannel_logout_session_required: true,
      },
      secret: true,
    });
  }
  if (spa) {
    // The single-page app's public-client mode: no secret, PKCE, tokens bound to its DPoP key.
    clients.push({
      id: IDENTITY_SPA_CLIENT,
      doc: {
        client_name: "identity-spa (public client)",
        grant_types: ["authorization_code", "refresh_token"],
        redirect_uris: [`${spa}/browser/`],
        post_logout_redirect_uris: [`${spa}/`],
        audiences: ["identity-rs"],
        scopes: NOTES_SCOPE.split(" "),
        token_endpoint_auth_method: "none",
        dpop_bound_access_tokens: true,
      },
      secret: false,
    });
  }

  for (const c of clients) {
    const url = `${admin}/tenants/${DEMO_TENANT}/clients/${c.id}`;
    const file = demoFile(d.dataRoot, `${c.id}.secret`);
    const found = await api("GET", url, rootToken);
    if (found.status === 404) {
      const made = await api("POST", `${admin}/tenants/${DEMO_TENANT}/clients`, rootToken, { client_id: c.id, ...c.doc });
      if (made.status !== 201) fail(`creating client ${c.id}`, made);
      if (c.secret) writeSecret(file, made.body.client_secret);
      continue;
    }
    if (found.status !== 200) fail(`reading client ${c.id}`, found);
    const updated = await api("PATCH", url, rootToken, c.doc);
    if (updated.status !== 200) fail(`updating client ${c.id}`, updated);
    if (c.secret && !existsSync(file)) {
      const rotated = await api("POST", `${url}/secret`, rootToken);
      if (rotated.status !== 200) fail(`rotating the secret of ${c.id}`, rotated);
      writeSecret(file, rotated.body.client_secret);
    }
  }
}

/** A password that passes identity-idp's rules: 24 random base64url characters. */
const newPassword = () => Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url");

/** The demo user's verified e-mail address: a pki-ca client certificate naming it signs the demo user in. */
export const DEMO_USER_EMAIL = "demo@example.com";

/**
 * The demo user in identity-idp, its password in `<data>/demo/user.password`. A user whose
 * password file is gone gets a new password. The demo tenant lets a pki-ca client certificate
 * with the user's verified e-mail address as its SAN sign in (policy `certificate_email`), and
 * one whose UPN SAN is a user's username (policy `certificate_upn`); both off in every other
 * tenant unless an administrator turns them on. Call once identity-idp is ready.
 */
export async function provisionUser(d: Pick<DemoInputs, "dataRoot" | "ca" | "authz"> & { idp: string }): Promise<void> {
  const api = apiOver(d.ca);
  const token = await clientToken(d.ca, `${d.authz}/t/${DEMO_TENANT}`, CLI_CLIENT, readSecret(demoFile(d.dataRoot, `${CLI_CLIENT}.secret`)), "identity-idp");
  const users = `${d.idp}/service/api/v1/users`;
  const file = demoFile(d.dataRoot, "user.password");
  let found: { id: string } | undefined;
  for (let page: string | undefined, i = 0; !found && i < 100; i++) {
    const r = await api("GET", `${users}?limit=100${page ? `&page_token=${page}` : ""}`, token);
    if (r.status !== 200) fail("listing users", r);
    found = r.body.items.find((u: { username: string }) => u.username === DEMO_USER);
    page = r.body.next_page_token ?? undefined;
    if (!page) break;
  }
  if (!found) {
    const password = newPassword();
    const made = await api("POST", users, token, { username: DEMO_USER, password, name: "Demo User", email: DEMO_USER_EMAIL, email_verified: true });
    if (made.status !== 201) fail("creating the demo user", made);
    writeSecret(file, password);
  } else if (!existsSync(file)) {
    const password = newPassword();
    const reset = await api("POST", `${users}/${found.id}/password`, token, { password });
    if (reset.status >= 300) fail("resetting the demo user's password", reset);
    writeSecret(file, password);
  }
  const policy = await api("PUT", `${d.idp}/service/api/v1/policy`, token, { certificate_email: true, certificate_upn: true });
  if (policy.status !== 200) fail("letting certificates sign in by e-mail and UPN in the demo tenant", policy);
}

/**
 * The demo tenant's client certificate for sm-kms's gRPC API: issued by the suite CA (which
 * the services created on their first start, sealed by the development unseal secret), named
 * `spiffe://cryptoutil/demo/kms-grpc-client`, which sm-kms maps to the demo tenant. Re-issued
 * on every start (30 days); written to `<data>/demo/kms-grpc-client.{crt,key}`.
 */
export async function provisionKmsGrpcClient(dataRoot: string): Promise<{ certFile: string; keyFile: string }> {
  const { ca } = await loadOrCreateSuiteCa({
    store: new DirectoryStore(join(dataRoot, "suite-ca")),
    sealer: await suiteCaSealerFromFiles([join(dataRoot, "dev-unseal.secret")]),
  });
  const leaf = await issueLeaf(ca, { serviceName: "kms-grpc-client", dnsNames: [], ipAddresses: [], uris: [KMS_GRPC_DEMO_CLIENT], usage: "client", validityDays: 30 });
  const certFile = demoFile(dataRoot, "kms-grpc-client.crt");
  const keyFile = demoFile(dataRoot, "kms-grpc-client.key");
  mkdirSync(dirname(certFile), { recursive: true, mode: 0o700 });
  writeFileSync(certFile, toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData)));
  writeFileSync(keyFile, toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey))), { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}
