/**
 * identity-idp alone over real HTTPS, for the tests of its factors: the authz stub's key for
 * login challenges, a test issuer for admin tokens, and helpers for the admin API.
 */
import { expect } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ServiceConfig } from "../../../src/service/config.ts";
import type { ServiceDefinition } from "../../../src/service/context.ts";
import { identityIdp } from "../../../apps/identity-idp/service.ts";
import { startTestService, tempDir, type TestService } from "../../support/service.ts";
import type { TestEngine } from "../../support/engine.ts";
import { startTestIssuer, type TestIssuer } from "../../support/issuer.ts";
import { startAuthzStub, type AuthzStub } from "./idp-authz-stub.ts";
import type { Browser } from "playwright-core";
import { chromiumPath, launchChromium, spkiPins } from "../../support/chromium.ts";

/** Headless Chromium trusting the idp's TLS key; undefined when Chromium is missing outside CI. */
export async function chromiumFor(h: IdpHarness): Promise<Browser | undefined> {
  const exe = chromiumPath();
  return exe ? launchChromium(exe, await spkiPins([Number(new URL(h.idp.publicUrl).port)], h.idp.ca)) : undefined;
}

export interface IdpHarness {
  idp: TestService;
  authz: AuthzStub;
  issuer: TestIssuer;
  tenant: string;
  /** An `identity:admin` token of the tenant. */
  token: string;
  admin(path: string, method?: string, body?: unknown): Promise<Response>;
  createUser(username: string, password: string, extra?: Record<string, unknown>): Promise<{ id: string; username: string }>;
  stop(): Promise<void>;
}

export async function startIdp(
  opts: { tenant?: string; app?: Record<string, unknown>; def?: ServiceDefinition; overrides?: (c: ServiceConfig) => void; engine?: TestEngine } = {},
): Promise<IdpHarness> {
  const tenant = opts.tenant ?? "acme";
  const authz = await startAuthzStub();
  const issuer = await startTestIssuer({ audience: "identity-idp" });
  const root = tempDir();
  const caFile = join(root, "authz-ca.pem");
  writeFileSync(caFile, authz.caPem);
  const idp = await startTestService(opts.def ?? identityIdp, {
    root,
    issuer,
    engine: opts.engine,
    overrides: (c) => {
      c.log.access = false;
      (c as { app?: unknown }).app = { authz_url: authz.url, ca_file: caFile, lockout_ip_threshold: 10_000, ...opts.app };
      opts.overrides?.(c);
    },
  });
  const token = await issuer.mint({ sub: "admin-client", tenant, scope: "identity:admin" });
  const admin = (path: string, method = "GET", body?: unknown) =>
    idp.call(`/service/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  return {
    idp,
    authz,
    issuer,
    tenant,
    token,
    admin,
    async createUser(username, password, extra = {}) {
      const r = await admin("/users", "POST", { username, password, name: `User ${username}`, email: `${username}@example.com`, email_verified: true, ...extra });
      expect(r.status).toBe(201);
      return (await r.json()) as { id: string; username: string };
    },
    async stop() {
      await idp.stop();
      await authz.stop();
      await issuer.stop();
    },
  };
}
