/** Starts sm-secrets over real HTTPS with the test issuer and a clock the test moves, and request helpers. */
import { createSmSecrets } from "../../apps/sm-secrets/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

export const ALL_SCOPES = "secrets:read secrets:write secrets:delete secrets:admin";
export const API = "/service/api/v1";

/** A clock for delete_version_after: starts at a fixed instant and moves only when told. */
export class TestClock {
  ms = Date.parse("2030-01-01T00:00:00.000Z");
  now = () => new Date(this.ms);
  advance(seconds: number) {
    this.ms += seconds * 1000;
  }
}

export interface Secrets {
  issuer: TestIssuer;
  svc: TestService;
  clock: TestClock;
  token: (tenant: string, scope?: string) => Promise<string>;
  /** A request to the API as `tenant` (default tenant-a) with every scope unless a token is given; status and JSON. */
  req: (method: string, path: string, body?: unknown, opts?: { tenant?: string; token?: string; raw?: string; contentType?: string }) => Promise<{ status: number; body: any }>;
  /** A request to the Vault surface (`/v1/...`) with `X-Vault-Token`. */
  vault: (method: string, path: string, body?: unknown, opts?: { tenant?: string; token?: string; contentType?: string }) => Promise<{ status: number; body: any }>;
  stop: () => Promise<void>;
}

export async function startSecrets(overrides?: (c: ServiceConfig) => void): Promise<Secrets> {
  const clock = new TestClock();
  const issuer = await startTestIssuer({ audience: "sm-secrets" });
  const svc = await startTestService(createSmSecrets({ now: clock.now }), {
    issuer,
    overrides: (c) => {
      quiet(c);
      overrides?.(c);
    },
  });
  const tokens = new Map<string, string>();
  const token = async (tenant: string, scope = ALL_SCOPES) => {
    const k = `${tenant} ${scope}`;
    let t = tokens.get(k);
    if (!t) {
      // Token lifetimes are real time: the service's clock only drives the secrets' own times.
      t = await issuer.mint({ tenant, scope }, { expiresIn: "1h" });
      tokens.set(k, t);
    }
    return t;
  };
  const parse = async (res: Response) => {
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const req: Secrets["req"] = async (method, path, body, opts = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? (await token(opts.tenant ?? "tenant-a"))}` };
    let payload: string | undefined;
    if (opts.raw !== undefined || body !== undefined) {
      headers["content-type"] = opts.contentType ?? "application/json";
      payload = opts.raw ?? JSON.stringify(body);
    }
    return parse(await svc.call(API + path, { method, headers, body: payload }));
  };
  const vault: Secrets["vault"] = async (method, path, body, opts = {}) => {
    const headers: Record<string, string> = { "x-vault-token": opts.token ?? (await token(opts.tenant ?? "tenant-a")) };
    if (body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
    return parse(await svc.call(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }));
  };
  return {
    issuer,
    svc,
    clock,
    token,
    req,
    vault,
    async stop() {
      await svc.stop();
      await issuer.stop();
    },
  };
}
