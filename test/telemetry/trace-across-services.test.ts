/**
 * Tracing end to end over real HTTPS: identity-authz and sm-kms (trusting identity-authz's
 * tokens) both export to a test OTLP receiver. The first sm-kms request with a token makes
 * sm-kms fetch identity-authz's JWKS through its federation client; that one request's trace
 * holds spans of both services under one trace id: sm-kms's server span -> its federated
 * client span -> identity-authz's server span, with database spans under the server spans.
 * No span attribute carries a secret. No timing assertions: the test polls the receiver.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { smKms } from "../../apps/sm-kms/service.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { quiet, startTestService, tempDir, trustIdentity, type TestService } from "../support/service.ts";
import { freePort } from "../identity/support/authz.ts";
import { startOtlpReceiver, until, type OtlpReceiver, type ReceivedSpan } from "./otlp-receiver.ts";

const TENANT = "traced";
const PLAINTEXT = "attack at dawn, tell no one";

let root: string;
let receiver: OtlpReceiver;
let authz: TestService;
let kms: TestService;
let authzUrl: string;
let clientSecret: string;
let token: string;

const traced = (receiverUrl: string) => (c: ServiceConfig) => {
  c.telemetry.otlp_endpoint = receiverUrl;
};

beforeAll(async () => {
  receiver = startOtlpReceiver();
  root = tempDir("cryptoutil-tracing-");
  const port = await freePort();
  authzUrl = `https://127.0.0.1:${port}`;
  const trust = (c: ServiceConfig, audience: string) => {
    trustIdentity(c, authzUrl, join(root, "identity-authz", "trust-bundle.pem"), audience);
  };
  authz = await startTestService(identityAuthz, {
    root,
    overrides: (c) => {
      quiet(c);
      trust(c, "identity-authz");
      c.server.port = port;
      traced(receiver.url)(c);
      (c as { app?: unknown }).app = {};
    },
  });
  await authz.call(`/t/root/.well-known/openid-configuration`); // waits for the bootstrap
  const getToken = async (tenant: string, id: string, secret: string, resource?: string) => {
    const r = await authz.call(`/t/${tenant}/token`, {
      method: "POST",
      headers: { authorization: `Basic ${btoa(`${id}:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", ...(resource ? { resource } : {}) }),
    });
    if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${await r.text()}`);
    return ((await r.json()) as { access_token: string }).access_token;
  };
  const bootSecret = readFileSync(join(root, "identity-authz", "bootstrap-admin.secret"), "utf8").trim();
  const admin = async (path: string, body: unknown) => {
    const r = await authz.call(`/service/api/v1${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${await getToken("root", "bootstrap-admin", bootSecret)}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (r.status !== 201) throw new Error(`authz admin ${path}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<{ client_secret: string }>;
  };
  await admin("/tenants", { id: TENANT });
  ({ client_secret: clientSecret } = await admin(`/tenants/${TENANT}/clients`, {
    client_id: "kms-caller",
    client_name: "tracing test",
    grant_types: ["client_credentials"],
    scopes: ["kms:admin", "kms:encrypt", "kms:decrypt"],
    audiences: ["sm-kms"],
  }));
  token = await getToken(TENANT, "kms-caller", clientSecret, "sm-kms");
  kms = await startTestService(smKms, {
    root,
    overrides: (c) => {
      quiet(c);
      c.log.level = "info";
      c.log.access = true;
      trust(c, "sm-kms");
      traced(receiver.url)(c);
    },
  });
}, 120_000);

afterAll(async () => {
  await kms?.stop();
  await authz?.stop();
  await receiver?.stop();
});

const kmsCall = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  kms.call(`/service/api/v1${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

const byTrace = (traceId: string) => receiver.spans().filter((s) => s.traceId === traceId);
const childrenOf = (spans: ReceivedSpan[], parent: ReceivedSpan) => spans.filter((s) => s.parentSpanId === parent.spanId);

let keyId: string;
let firstTrace: string;

describe("one trace across sm-kms and identity-authz", () => {
  test("the first sm-kms request with a token: sm-kms server -> federated client -> identity-authz server", async () => {
    const res = await kmsCall("/keys", { name: "traced-key", algorithm: "A256GCM" });
    expect(res.status).toBe(201);
    keyId = ((await res.json()) as { id: string }).id;
    const requestId = res.headers.get("x-request-id")!;

    const server = await until("sm-kms's server span arrives", () =>
      receiver.spans().find((s) => s.service === "sm-kms" && s.kind === 2 && s.attributes["cryptoutil.request_id"] === requestId),
    );
    firstTrace = server.traceId;
    expect(server.parentSpanId).toBeUndefined(); // no traceparent came in: a new trace
    expect(server.name).toBe("POST /service/api/v1/keys");
    expect(server.attributes).toMatchObject({
      "http.request.method": "POST",
      "url.path": "/service/api/v1/keys",
      "http.route": "/service/api/v1/keys",
      "http.response.status_code": 201,
      "server.address": "127.0.0.1",
    });

    // sm-kms's federated client span, a child of its server span, and identity-authz's server
    // span for the JWKS, a child of the client span (the traceparent it sent).
    const spans = await until("identity-authz's JWKS span arrives in the same trace", () => {
      const all = byTrace(firstTrace);
      return all.some((s) => s.service === "identity-authz" && s.kind === 2) && all;
    });
    const client = spans.find((s) => s.service === "sm-kms" && s.kind === 3 && s.attributes["peer.service"] === "identity")!;
    expect(client).toBeDefined();
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.name).toBe("GET identity");
    expect(client.attributes).toMatchObject({ "http.request.method": "GET", "url.full": `${authzUrl}/t/${TENANT}/jwks`, "http.response.status_code": 200 });
    const jwks = spans.find((s) => s.service === "identity-authz" && s.kind === 2)!;
    expect(jwks.parentSpanId).toBe(client.spanId);
    expect(jwks.name).toBe("GET /t/:tenant/jwks");
    expect(jwks.attributes["http.response.status_code"]).toBe(200);
    // Spans nest in time: the callee's span lies within the caller's.
    expect(BigInt(jwks.startTimeUnixNano) >= BigInt(server.startTimeUnixNano)).toBe(true);
    expect(BigInt(client.endTimeUnixNano) <= BigInt(server.endTimeUnixNano)).toBe(true);

    // Database spans under sm-kms's server span (the key's rows), with the engine and no SQL.
    const kmsDb = await until("sm-kms's database spans arrive", () => {
      const db = byTrace(firstTrace).filter((s) => s.service === "sm-kms" && s.name.startsWith("db "));
      return db.some((s) => s.name === "db insert") && db;
    });
    for (const s of kmsDb) {
      expect(s.parentSpanId).toBe(server.spanId);
      expect(s.attributes["db.system"]).toBe("sqlite");
      expect(Object.keys(s.attributes).some((k) => k.includes("statement") || k.includes("query"))).toBe(false);
    }
    expect(kmsDb.map((s) => s.attributes["db.collection.name"])).toContain("elastic_keys");

    // The request's access log line names its trace.
    const line = kms.logs.map((l) => JSON.parse(l)).find((l) => l.msg === "request" && l.request_id === requestId);
    expect(line.trace_id).toBe(firstTrace);
  }, 120_000);

  test("an incoming traceparent is honoured: sm-kms's span joins the caller's trace", async () => {
    const callerTrace = "0af7651916cd43dd8448eb211c80319c";
    const callerSpan = "b7ad6b7169203331";
    const res = await kmsCall(`/keys/${keyId}/encrypt`, { plaintext: Buffer.from(PLAINTEXT).toString("base64url") }, { traceparent: `00-${callerTrace}-${callerSpan}-01` });
    expect(res.status).toBe(200);
    const server = await until("the encrypt span arrives", () => byTrace(callerTrace).find((s) => s.service === "sm-kms" && s.kind === 2));
    expect(server.parentSpanId).toBe(callerSpan);
    expect(server.name).toBe("POST /service/api/v1/keys/:id/encrypt");
    expect(server.attributes["url.path"]).toBe(`/service/api/v1/keys/${keyId}/encrypt`);
    // The keyring's JOSE operation is a crypto span of that request: algorithm and key
    // location, nothing of the key or the data.
    const crypto = await until("the crypto span arrives", () => byTrace(callerTrace).find((s) => s.service === "sm-kms" && s.name === "crypto encrypt"));
    expect(crypto.parentSpanId).toBe(server.spanId);
    expect(crypto.attributes).toMatchObject({ "crypto.operation": "encrypt", "crypto.algorithm": "dir", "crypto.key.location": "raw" });
  }, 120_000);

  test("a caller that does not sample: nothing recorded, nothing in the log's trace but its id", async () => {
    const callerTrace = "1af7651916cd43dd8448eb211c80319d";
    const res = await kmsCall(`/keys/${keyId}/encrypt`, { plaintext: Buffer.from("x").toString("base64url") }, { traceparent: `00-${callerTrace}-b7ad6b7169203332-00` });
    expect(res.status).toBe(200);
    const requestId = res.headers.get("x-request-id")!;
    // A later recorded request's span arriving shows the exporter has sent what came before.
    const probe = await kmsCall(`/keys/${keyId}/encrypt`, { plaintext: "eA" });
    const probeId = probe.headers.get("x-request-id")!;
    await until("a later span arrives", () => receiver.spans().find((s) => s.attributes["cryptoutil.request_id"] === probeId));
    expect(byTrace(callerTrace)).toEqual([]);
    const line = kms.logs.map((l) => JSON.parse(l)).find((l) => l.msg === "request" && l.request_id === requestId);
    expect(line.trace_id).toBe(callerTrace);
  }, 120_000);

  test("no secret in any exported span: token, client secret, plaintext, key material", async () => {
    const text = receiver.bodies.join("\n");
    expect(text.length).toBeGreaterThan(0);
    const b64 = Buffer.from(PLAINTEXT).toString("base64url");
    for (const secret of [token, token.split(".")[2]!, clientSecret, PLAINTEXT, b64]) expect(text).not.toContain(secret);
    // Key material: sm-kms stores it barrier-encrypted; no value of any database row is exported.
    const rows = await kms.ctx.db.selectFrom("material_keys" as never).selectAll().execute().catch(() => []);
    for (const row of rows as Record<string, unknown>[]) {
      for (const v of Object.values(row)) {
        if (v instanceof Uint8Array && v.length >= 16) expect(text).not.toContain(Buffer.from(v).toString("base64"));
      }
    }
    for (const s of receiver.spans()) {
      for (const [k, v] of Object.entries(s.attributes)) {
        expect(k).not.toMatch(/authorization|cookie|token|secret|password|plaintext|key_material/i);
        expect(String(v)).not.toMatch(/^Bearer |^Basic /);
      }
    }
  }, 60_000);
});
