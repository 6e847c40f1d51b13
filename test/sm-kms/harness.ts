/** Starts sm-kms over real HTTPS with the test issuer, and small request helpers for its tests. */
import { smKms } from "../../apps/sm-kms/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, type TestService } from "../support/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import type { TestEngine } from "../support/engine.ts";

export const ALL_SCOPES = "kms:admin kms:encrypt kms:decrypt kms:sign kms:verify kms:mac";
export const API = "/service/api/v1";

export interface Kms {
  issuer: TestIssuer;
  svc: TestService;
  token: (tenant: string, scope?: string) => Promise<string>;
  /** POST/GET/PATCH as tenant with all scopes unless a token is given; returns status and JSON. */
  req: (method: string, path: string, body?: unknown, opts?: { tenant?: string; token?: string; raw?: string; contentType?: string }) => Promise<{ status: number; body: any }>;
  stop: () => Promise<void>;
}

/** `root`: a data root to reuse (a restart over the same database); `engine`: where it runs (ON_DENO: on Deno). */
export async function startKms(overrides?: (c: ServiceConfig) => void, opts: { root?: string; engine?: TestEngine } = {}): Promise<Kms> {
  const issuer = await startTestIssuer({ audience: "sm-kms" });
  const svc = await startTestService(smKms, { issuer, overrides, root: opts.root, engine: opts.engine });
  const tokens = new Map<string, string>();
  const token = async (tenant: string, scope = ALL_SCOPES) => {
    const k = `${tenant} ${scope}`;
    let t = tokens.get(k);
    if (!t) {
      t = await issuer.mint({ tenant, scope });
      tokens.set(k, t);
    }
    return t;
  };
  const req: Kms["req"] = async (method, path, body, opts = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? (await token(opts.tenant ?? "tenant-a"))}` };
    let payload: string | undefined;
    if (opts.raw !== undefined || body !== undefined) {
      headers["content-type"] = opts.contentType ?? "application/json";
      payload = opts.raw ?? JSON.stringify(body);
    }
    const res = await svc.call(API + path, { method, headers, body: payload });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  return {
    issuer,
    svc,
    token,
    req,
    async stop() {
      await svc.stop();
      await issuer.stop();
    },
  };
}

export const b64u = (b: Uint8Array | string) => Buffer.from(typeof b === "string" ? new TextEncoder().encode(b) : b).toString("base64url");
export const unb64u = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));
export const text = (s: string) => new TextDecoder().decode(unb64u(s));
