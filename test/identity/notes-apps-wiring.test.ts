/**
 * How `npm start` wires identity-rp, identity-spa and identity-rs (scripts/suite/manifest.ts):
 * the suite defaults pass each service's own config check, point identity-rp at the demo
 * tenant and identity-rs, open identity-rs's /service/api and identity-rp's session to
 * identity-spa's origin, and leave everything off without the demo tenant.
 */
import { describe, expect, test } from "bun:test";
import { resolveConfig } from "../../src/service/service.ts";
import { identityRp } from "../../apps/identity-rp/service.ts";
import { identitySpa } from "../../apps/identity-spa/service.ts";
import { identityRs } from "../../apps/identity-rs/service.ts";
import { parseRpConfig } from "../../apps/identity-rp/config.ts";
import { parseSpaConfig } from "../../apps/identity-spa/config.ts";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { parseAppConfig as parseAuthzConfig } from "../../apps/identity-authz/config.ts";
import { suiteDefaults, type SuiteLayout } from "../../scripts/suite/manifest.ts";

const urls = {
  "identity-authz": "https://127.0.0.1:18000",
  "identity-rs": "https://127.0.0.1:18200",
  "identity-rp": "https://127.0.0.1:18300",
  "identity-spa": "https://127.0.0.1:18400",
};
const layout = (demo: boolean): SuiteLayout => ({ dataRoot: "data", urls, demo });
const configOf = (def: typeof identityRp | typeof identityAuthz, l: SuiteLayout) => {
  const c = resolveConfig(def, { argv: [], env: { CRYPTOUTIL_SUITE_DEFAULTS: JSON.stringify(suiteDefaults(def.name, l)) } });
  def.checkConfig?.(c);
  return c;
};

describe("npm start's wiring of the notes apps", () => {
  test("identity-rp: the demo tenant's issuer, identity-rs behind /api, identity-spa as its frontend", () => {
    const rp = parseRpConfig(configOf(identityRp, layout(true)).app)!;
    expect(rp).toMatchObject({
      issuer: "https://127.0.0.1:18000/t/demo",
      client_id: "identity-rp",
      api_url: "https://127.0.0.1:18200/service/api/v1",
      frontend_origins: ["https://127.0.0.1:18400"],
      post_logout_redirect_uri: "https://127.0.0.1:18400/",
      scope: "openid profile notes:read notes:write",
    });
  });

  test("identity-spa: both modes configured; identity-rs lets its origin call /service/api", () => {
    const spa = parseSpaConfig(configOf(identitySpa, layout(true)).app);
    expect(spa).toMatchObject({ rp_url: "https://127.0.0.1:18300", issuer: "https://127.0.0.1:18000/t/demo", client_id: "identity-spa", api_url: "https://127.0.0.1:18200/service/api/v1" });
    expect(identitySpa.pageConnect!(configOf(identitySpa, layout(true)))).toEqual(["https://127.0.0.1:18300", "https://127.0.0.1:18000", "https://127.0.0.1:18200"]);
    const rs = configOf(identityRs, layout(true));
    expect(rs.auth.cors_origins).toEqual(["https://127.0.0.1:18400"]);
    expect(rs.auth.issuer).toBe("https://127.0.0.1:18000/t/{tenant}");
  });

  test("identity-authz: the suite's own origins (itself included) may receive requests on loopback, nothing else", () => {
    const authz = parseAuthzConfig(configOf(identityAuthz, layout(false)));
    expect(authz.client_urls_allowed_origins.sort()).toEqual(Object.values(urls).sort());
    expect(authz.client_urls_allow_private_addresses).toBe(false);
  });

  test("without the demo tenant (production mode) identity-rp and identity-spa are left unconfigured", () => {
    expect(parseRpConfig(configOf(identityRp, layout(false)).app)).toBeUndefined();
    const spa = parseSpaConfig(configOf(identitySpa, layout(false)).app);
    expect(spa.rp_url).toBeUndefined();
    expect(spa.issuer).toBeUndefined();
  });
});
