/** Starts the audit service over real HTTPS with the test issuer, and request helpers. */
import { createAuditService } from "../../apps/audit/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, type TestService } from "../support/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import type { TestEngine } from "../support/engine.ts";

export const API = "/service/api/v1";
export const READ = "audit:read";
export const ADMIN = "audit:read audit:admin";
export const INGEST = "audit:ingest";

export interface Audit {
  issuer: TestIssuer;
  svc: TestService;
  token: (tenant: string, scope: string, sub?: string) => Promise<string>;
  /** A request as `tenant` with `scope`; status and parsed JSON (or text). */
  req: (method: string, path: string, body?: unknown, opts?: { tenant?: string; scope?: string; sub?: string; raw?: string }) => Promise<{ status: number; body: any; text: string }>;
  /** Appends events as service `sub` (scope audit:ingest). */
  ingest: (events: unknown[], sub?: string) => Promise<{ status: number; body: any }>;
  stop: () => Promise<void>;
}

let counter = 0;
/** A valid event of `tenant`. */
export function event(tenant: string, over: Record<string, unknown> = {}) {
  counter++;
  return {
    id: `evt-${process.pid}-${Date.now()}-${counter}`,
    time: new Date().toISOString(),
    tenant,
    actor: "client-1",
    action: "key.create",
    resource: `key-${counter}`,
    result: "ok",
    request_id: `req-${counter}`,
    ...over,
  };
}

export async function startAudit(opts: { root?: string; engine?: TestEngine; overrides?: (c: ServiceConfig) => void } = {}): Promise<Audit> {
  const issuer = await startTestIssuer({ audience: "audit" });
  const svc = await startTestService(createAuditService(), {
    issuer,
    root: opts.root,
    engine: opts.engine,
    overrides: (c) => {
      quiet(c);
      c.app = { checkpoint_interval_ms: 0, ...(c.app ?? {}) };
      opts.overrides?.(c);
    },
  });
  const tokens = new Map<string, string>();
  const token = async (tenant: string, scope: string, sub = "tester") => {
    const k = `${tenant} ${scope} ${sub}`;
    let t = tokens.get(k);
    if (!t) tokens.set(k, (t = await issuer.mint({ tenant, scope, sub }, { expiresIn: "1h" })));
    return t;
  };
  const req: Audit["req"] = async (method, path, body, o = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${await token(o.tenant ?? "tenant-a", o.scope ?? ADMIN, o.sub)}` };
    let payload: string | undefined;
    if (o.raw !== undefined || body !== undefined) {
      headers["content-type"] = "application/json";
      payload = o.raw ?? JSON.stringify(body);
    }
    const res = await svc.call(API + path, { method, headers, body: payload });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  };
  return {
    issuer,
    svc,
    token,
    req,
    ingest: (events, sub = "sm-kms") => req("POST", "/events", { events }, { tenant: "root", scope: INGEST, sub }),
    async stop() {
      await svc.stop();
      await issuer.stop();
    },
  };
}
