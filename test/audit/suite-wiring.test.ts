/**
 * `npm start`'s wiring of audit (scripts/suite/manifest.ts), checked through each service's own
 * config loader as the launcher passes it (CRYPTOUTIL_SUITE_DEFAULTS): audit listens on its mTLS
 * port for the other services' client certificates, and every other service sends its events
 * there. Without audit in the run, nobody is wired to it.
 */
import { describe, expect, test } from "bun:test";
import { auditService } from "../../apps/audit/service.ts";
import { smKms } from "../../apps/sm-kms/service.ts";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { resolveConfig } from "../../src/service/service.ts";
import { serviceSpiffeId } from "../../src/auth/client-cert.ts";
import { AUDIT_MTLS_PORT, suiteDefaults, type SuiteLayout } from "../../scripts/suite/manifest.ts";

const urls = { "identity-authz": "https://127.0.0.1:18000", "sm-kms": "https://127.0.0.1:8080", "pki-ca": "https://127.0.0.1:8443", audit: "https://127.0.0.1:8800" };
const layout: SuiteLayout = { dataRoot: "/srv/cryptoutil/data", urls, demo: true };
const configOf = (def: typeof smKms, l: SuiteLayout) => resolveConfig(def, { argv: [], env: { CRYPTOUTIL_SUITE_DEFAULTS: JSON.stringify(suiteDefaults(def.name, l)) } });

describe("npm start wiring of audit", () => {
  test("audit takes the suite's client certificates on its mTLS port, as audit:ingest principals", () => {
    const c = configOf(auditService, layout);
    expect(c.server.mtls_port).toBe(AUDIT_MTLS_PORT);
    expect(c.mtls.principals.map((p) => p.uri).sort()).toEqual(["identity-authz", "pki-ca", "sm-kms"].map(serviceSpiffeId));
    expect(c.mtls.principals.every((p) => p.scopes.join() === "audit:ingest" && p.subject === p.uri!.split("/").pop())).toBe(true);
    expect(c.federation.audit.url).toBeUndefined();
  });

  test("every other service sends its events to audit's mTLS port, trusting the suite CA through its own bundle", () => {
    for (const def of [smKms, identityAuthz]) {
      const c = configOf(def, layout);
      expect(c.federation.audit.url).toBe(`https://127.0.0.1:${AUDIT_MTLS_PORT}`);
      expect(c.federation.audit.ca_file).toBe(`/srv/cryptoutil/data/${def.name}/trust-bundle.pem`);
      expect(c.federation.audit.fallback).toBe("spool");
    }
  });

  test("without audit in the run nothing is wired to it", () => {
    const { audit: _, ...others } = urls;
    expect(configOf(smKms, { ...layout, urls: others }).federation.audit.url).toBeUndefined();
  });
});
