/**
 * identity-rs and identity-rp in an Identity suite (e2e-suite.ts), as `npm start` wires them:
 * identity-rs trusting the suite's issuer, identity-rp with its own confidential client
 * (`acme-rp`, PAR required, audience identity-rs) proxying to it.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityRp } from "../../../apps/identity-rp/service.ts";
import { identityRs } from "../../../apps/identity-rs/service.ts";
import { quiet, startTestService, trustIdentity, type TestService } from "../../support/service.ts";
import type { IdentitySuite } from "./e2e-suite.ts";
import { freePort } from "./authz.ts";

export const NOTES_SCOPES = ["openid", "profile", "notes:read", "notes:write"];

export function startNotesRs(s: IdentitySuite, opts: { port?: number; corsOrigins?: string[] } = {}): Promise<TestService> {
  return startTestService(identityRs, {
    root: s.root,
    overrides: (c) => {
      quiet(c);
      trustIdentity(c, s.authz.publicUrl, join(s.root, "identity-rs", "trust-bundle.pem"), "identity-rs");
      if (opts.port) c.server.port = opts.port;
      if (opts.corsOrigins) c.auth.cors_origins = opts.corsOrigins;
    },
  });
}

/** identity-rp with client `acme-rp`; `postLogout` is its registered and configured logout return (default its own `/`). */
export async function startRp(s: IdentitySuite, opts: { apiUrl: string; port?: number; frontends?: string[]; postLogout?: string }): Promise<TestService> {
  const port = opts.port ?? (await freePort());
  const url = `https://127.0.0.1:${port}`;
  const postLogout = opts.postLogout ?? `${url}/`;
  const client = await s.authzAdmin(`/tenants/${s.tenant}/clients`, {
    client_id: "acme-rp",
    client_name: "Notes (identity-rp)",
    grant_types: ["authorization_code", "refresh_token"],
    redirect_uris: [`${url}/callback`],
    post_logout_redirect_uris: [postLogout],
    scopes: NOTES_SCOPES,
    audiences: ["identity-rs"],
    require_par: true,
    // identity-authz tells identity-rp when a user's session at the idp ends.
    backchannel_logout_uri: `${url}/backchannel-logout`,
    backchannel_logout_session_required: true,
  });
  const secretFile = join(s.root, "acme-rp.secret");
  writeFileSync(secretFile, client.client_secret + "\n", { mode: 0o600 });
  return startTestService(identityRp, {
    root: s.root,
    overrides: (c) => {
      quiet(c);
      c.server.port = port;
      (c as { app?: unknown }).app = { issuer: s.issuer, client_id: "acme-rp", client_secret_file: secretFile, api_url: opts.apiUrl, frontend_origins: opts.frontends ?? [], post_logout_redirect_uri: postLogout };
    },
  });
}
