/** Starts jose-ja over real HTTPS with the test issuer, and small request helpers for its tests. */
import { joseJa } from "../../apps/jose-ja/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, type TestService } from "../support/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import type { TestEngine } from "../support/engine.ts";

export const ALL_SCOPES = "jose:admin jose:sign jose:verify jose:encrypt jose:decrypt";
export const API = "/service/api/v1";

export interface Res {
  status: number;
  body: any;
  headers: Headers;
}

export interface Jose {
  issuer: TestIssuer;
  svc: TestService;
  token: (tenant: string, scope?: string, sub?: string) => Promise<string>;
  /** A request to the authenticated API as `tenant` (default tenant-a) with all scopes unless a token is given. */
  req: (method: string, path: string, body?: unknown, opts?: { tenant?: string; token?: string; raw?: string; headers?: Record<string, string> }) => Promise<Res>;
  /** An unauthenticated GET of a root route (the public JWKS). */
  pub: (path: string, headers?: Record<string, string>) => Promise<Res>;
  stop: () => Promise<void>;
}

async function read(res: Response): Promise<Res> {
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

/** `root`: a data root to reuse (a restart over the same database); `engine`: where it runs (ON_DENO: on Deno). */
export async function startJose(overrides?: (c: ServiceConfig) => void, opts: { root?: string; engine?: TestEngine } = {}): Promise<Jose> {
  const issuer = await startTestIssuer({ audience: "jose-ja" });
  const svc = await startTestService(joseJa, { issuer, overrides, root: opts.root, engine: opts.engine });
  const tokens = new Map<string, string>();
  const token = async (tenant: string, scope = ALL_SCOPES, sub = `user-of-${tenant}`) => {
    const k = `${tenant} ${scope} ${sub}`;
    let t = tokens.get(k);
    if (!t) {
      t = await issuer.mint({ tenant, scope, sub, client_id: "test-client" });
      tokens.set(k, t);
    }
    return t;
  };
  const req: Jose["req"] = async (method, path, body, opts = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? (await token(opts.tenant ?? "tenant-a"))}`, ...opts.headers };
    let payload: string | undefined;
    if (opts.raw !== undefined || body !== undefined) {
      headers["content-type"] = "application/json";
      payload = opts.raw ?? JSON.stringify(body);
    }
    return read(await svc.call(API + path, { method, headers, body: payload }));
  };
  return {
    issuer,
    svc,
    token,
    req,
    pub: async (path, headers = {}) => read(await svc.call(path, { headers })),
    async stop() {
      await svc.stop();
      await issuer.stop();
    },
  };
}

export const b64u = (b: Uint8Array | string) => Buffer.from(typeof b === "string" ? new TextEncoder().encode(b) : b).toString("base64url");
export const unb64u = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));
export const text = (s: string) => new TextDecoder().decode(unb64u(s));
