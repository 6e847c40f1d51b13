/**
 * The service template, driven through learn-ps over real HTTPS: TLS 1.3 only,
 * admin on loopback, bearer and session authentication, CSRF, rate limits, the
 * error model, docs, metrics, seal state, restart, and data at rest.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, tempDir, type TestService } from "../support/service.ts";

const RW = "pets:read pets:write";
let issuer: TestIssuer;
let svc: TestService;
let tokenA: string;
let tokenB: string;

const json = (body: unknown) => ({ method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
const auth = (token: string, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` },
});

async function openssl(args: string[], input = ""): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["openssl", ...args], { stdin: new TextEncoder().encode(input), stdout: "pipe", stderr: "pipe" });
  const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
  return { code: await p.exited, out };
}

beforeAll(async () => {
  issuer = await startTestIssuer();
  svc = await startTestService(learnPs, { issuer });
  tokenA = await issuer.mint({ tenant: "tenant-a", scope: RW });
  tokenB = await issuer.mint({ tenant: "tenant-b", scope: RW });
});

afterAll(async () => {
  await svc?.stop();
  await issuer?.stop();
});

describe("TLS", () => {
  test("TLS 1.3 handshake succeeds and TLS 1.2 is refused, on both servers", async () => {
    const caFile = svc.trustBundlePath;
    for (const url of [svc.publicUrl, svc.adminUrl]) {
      const hostPort = new URL(url).host;
      const ok = await openssl(["s_client", "-connect", hostPort, "-tls1_3", "-CAfile", caFile, "-verify_return_error", "-brief"], "Q\n");
      expect(ok.out).toContain("TLSv1.3");
      expect(ok.code).toBe(0);
      const old = await openssl(["s_client", "-connect", hostPort, "-tls1_2", "-CAfile", caFile, "-brief"], "Q\n");
      expect(old.code).not.toBe(0);
      expect(old.out).not.toContain("Protocol version: TLSv1.2");
    }
  });

  test("the certificate verifies against the exported trust bundle", async () => {
    const res = await svc.call("/docs/openapi.json");
    expect(res.status).toBe(200);
  });
});

describe("admin server", () => {
  test("binds 127.0.0.1 only and answers the probes", async () => {
    expect(new URL(svc.adminUrl).hostname).toBe("127.0.0.1");
    expect((await svc.admin("/admin/v1/livez")).status).toBe(200);
    const ready = await svc.admin("/admin/v1/readyz");
    expect(ready.status).toBe(200);
    const health = (await (await svc.admin("/admin/v1/healthz")).json()) as { status: string; barrier: { sealed: boolean } };
    expect(health.status).toBe("ready");
  });

  test("is not reachable on a non-loopback address of this host", async () => {
    const port = new URL(svc.adminUrl).port;
    const addrs = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && a.family === "IPv4" && !a.internal)
      .map((a) => a!.address);
    // Loopback aliases other than 127.0.0.1 exist on every Linux host, so the check always runs.
    for (const host of ["127.0.0.2", ...addrs]) {
      let connected = false;
      try {
        await Bun.connect({ hostname: host, port: Number(port), socket: { data() {}, open(s) { connected = true; s.end(); } } });
      } catch {
        connected = false;
      }
      expect(connected).toBe(false);
    }
  });

  test("admin paths are not served on the public port", async () => {
    const res = await svc.call("/admin/v1/livez");
    expect(res.status).toBe(404);
  });

  test("metrics are Prometheus text with per-route counts and histograms", async () => {
    await svc.call("/service/api/v1/pets", auth(tokenA));
    const text = await (await svc.admin("/admin/v1/metrics")).text();
    expect(text).toContain('http_requests_total{service="learn-ps",method="GET",route="/service/api/v1/pets",status="200"}');
    expect(text).toMatch(/http_request_duration_seconds_bucket\{[^}]*route="\/service\/api\/v1\/pets"[^}]*le="\+Inf"\} \d+/);
  });

  test("unsafe admin operations need the admin token", async () => {
    const res = await svc.admin("/admin/v1/shutdown", { method: "POST" });
    expect(res.status).toBe(401);
    const wrong = await svc.admin("/admin/v1/barrier/rotate/content", { method: "POST", headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
  });
});

describe("/service authentication", () => {
  test("401 without a token, with a malformed one, a foreign-key one, an expired one and a wrong audience", async () => {
    const cases: Array<[string | undefined, string]> = [
      [undefined, "unauthenticated"],
      ["not-a-jwt", "invalid_token"],
      [await issuer.mint({ tenant: "tenant-a", scope: RW }, { key: "foreign" }), "invalid_token"],
      [await issuer.mint({ tenant: "tenant-a", scope: RW }, { expiresIn: Math.floor(Date.now() / 1000) - 120 }), "invalid_token"],
      [await issuer.mint({ tenant: "tenant-a", scope: RW, aud: "someone-else" }), "invalid_token"],
      [await issuer.mint({ scope: RW }), "invalid_token"],
    ];
    for (const [token, code] of cases) {
      const res = await svc.call("/service/api/v1/pets", token ? auth(token) : {});
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toStartWith("Bearer");
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
    }
  });

  test("403 with a token that lacks the route's scope", async () => {
    const readOnly = await issuer.mint({ tenant: "tenant-a", scope: "pets:read" });
    expect((await svc.call("/service/api/v1/pets", auth(readOnly))).status).toBe(200);
    const res = await svc.call("/service/api/v1/pets", auth(readOnly, json({ name: "Rex", species: "dog" })));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("insufficient_scope");
  });

  test("a session cookie is refused on /service", async () => {
    const { id } = await svc.ctx.sessions.create({ tenant: "tenant-a", subject: "alice", scopes: ["pets:read"] });
    const res = await svc.call("/service/api/v1/pets", { headers: { cookie: `${SESSION_COOKIE}=${id}` } });
    expect(res.status).toBe(401);
  });
});

describe("/browser authentication", () => {
  test("a bearer token is refused on /browser", async () => {
    const res = await svc.call("/browser/api/v1/pets", auth(tokenA));
    expect(res.status).toBe(401);
  });

  test("a session works for reads; unsafe methods need the CSRF token", async () => {
    const { id, csrfToken } = await svc.ctx.sessions.create({ tenant: "tenant-a", subject: "alice", scopes: ["pets:read", "pets:write"] });
    const cookie = `${SESSION_COOKIE}=${id}`;
    expect((await svc.call("/browser/api/v1/pets", { headers: { cookie } })).status).toBe(200);

    const body = JSON.stringify({ name: "Tom", species: "cat" });
    const noCsrf = await svc.call("/browser/api/v1/pets", { method: "POST", body, headers: { cookie, "content-type": "application/json" } });
    expect(noCsrf.status).toBe(403);
    expect(((await noCsrf.json()) as { error: { code: string } }).error.code).toBe("csrf_failed");

    const badCsrf = await svc.call("/browser/api/v1/pets", {
      method: "POST",
      body,
      headers: { cookie, "content-type": "application/json", "x-csrf-token": csrfToken.slice(0, -2) + "AA" },
    });
    expect(badCsrf.status).toBe(403);

    const crossOrigin = await svc.call("/browser/api/v1/pets", {
      method: "POST",
      body,
      headers: { cookie, "content-type": "application/json", "x-csrf-token": csrfToken, origin: "https://evil.example" },
    });
    expect(crossOrigin.status).toBe(403);

    const ok = await svc.call("/browser/api/v1/pets", {
      method: "POST",
      body,
      headers: { cookie, "content-type": "application/json", "x-csrf-token": csrfToken },
    });
    expect(ok.status).toBe(201);
  });

  test("a revoked session is refused", async () => {
    const { id } = await svc.ctx.sessions.create({ tenant: "tenant-a", subject: "bob", scopes: ["pets:read"] });
    await svc.ctx.sessions.revoke(id);
    expect((await svc.call("/browser/api/v1/pets", { headers: { cookie: `${SESSION_COOKIE}=${id}` } })).status).toBe(401);
  });

  test("the HTML page is served with a strict CSP", async () => {
    const res = await svc.call("/browser/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
  });
});

describe("error model", () => {
  const cases: Array<[string, RequestInit, number, string]> = [
    ["malformed JSON", { method: "POST", body: '{"name": "Rex", ', headers: { "content-type": "application/json" } }, 400, "malformed_json"],
    ["wrong type", json({ name: 42, species: "dog" }), 400, "validation_failed"],
    ["unknown species", json({ name: "Rex", species: "dragon" }), 400, "validation_failed"],
    ["extra field", json({ name: "Rex", species: "dog", admin: true }), 400, "validation_failed"],
    ["array body", json([1, 2]), 400, "validation_failed"],
    ["wrong content type", { method: "POST", body: "name=Rex", headers: { "content-type": "application/x-www-form-urlencoded" } }, 415, "unsupported_media_type"],
  ];
  for (const [name, init, status, code] of cases) {
    test(`${name} -> ${status} ${code}`, async () => {
      const res = await svc.call("/service/api/v1/pets", auth(tokenA, init));
      expect(res.status).toBe(status);
      const body = (await res.json()) as { error: { code: string; request_id: string } };
      expect(body.error.code).toBe(code);
      expect(body.error.request_id).toBe(res.headers.get("x-request-id")!);
    });
  }

  test("a validation error names what was expected, never the value that was sent", async () => {
    const res = await svc.call("/service/api/v1/pets", auth(tokenA, { method: "POST", body: JSON.stringify({ name: "Rex", species: "hunter2-sekrit" }), headers: { "content-type": "application/json" } }));
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text).toContain("species");
    expect(text).not.toContain("hunter2-sekrit");
  });

  test("oversized body -> 413 from the pipeline: the error model, request id and security headers", async () => {
    const big = JSON.stringify({ name: "Rex", species: "dog", owner_note: "x".repeat(1024 * 1024) });
    const res = await svc.call("/service/api/v1/pets", auth(tokenA, { method: "POST", body: big, headers: { "content-type": "application/json" } }));
    expect(res.status).toBe(413);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const body = (await res.json()) as { error: { code: string; request_id: string } };
    expect(body.error.code).toBe("payload_too_large");
    expect(body.error.request_id).toBe(res.headers.get("x-request-id")!);
    // Without Content-Length (a streamed body) the pipeline measures what it read.
    const enc = new TextEncoder();
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(enc.encode(big));
        c.close();
      },
    });
    const chunked = await svc.call("/service/api/v1/pets", auth(tokenA, { method: "POST", body: stream, headers: { "content-type": "application/json" }, duplex: "half" } as RequestInit));
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
  });

  test("bad path parameter and bad query -> 400; unknown pet -> 404", async () => {
    expect((await svc.call("/service/api/v1/pets/not-a-uuid", auth(tokenA))).status).toBe(400);
    expect((await svc.call("/service/api/v1/pets?limit=1000", auth(tokenA))).status).toBe(400);
    expect((await svc.call("/service/api/v1/pets?page_token=%%%", auth(tokenA))).status).toBe(400);
    expect((await svc.call(`/service/api/v1/pets/${crypto.randomUUID()}`, auth(tokenA))).status).toBe(404);
  });
});

describe("learn-ps", () => {
  test("create, get, update, list with filter and pagination, delete", async () => {
    const created: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await svc.call("/service/api/v1/pets", auth(tokenB, json({ name: `Pet ${i}`, species: i % 2 ? "cat" : "dog", tags: ["t" + i] })));
      expect(res.status).toBe(201);
      created.push(((await res.json()) as { id: string }).id);
    }
    const page1 = (await (await svc.call("/service/api/v1/pets?limit=2", auth(tokenB))).json()) as { items: { id: string }[]; next_page_token: string };
    expect(page1.items.map((p) => p.id)).toEqual(created.slice(0, 2));
    const page2 = (await (await svc.call(`/service/api/v1/pets?limit=2&page_token=${page1.next_page_token}`, auth(tokenB))).json()) as { items: { id: string }[] };
    expect(page2.items.map((p) => p.id)).toEqual(created.slice(2, 4));
    const cats = (await (await svc.call("/service/api/v1/pets?species=cat", auth(tokenB))).json()) as { items: { species: string }[] };
    expect(cats.items.length).toBe(2);
    expect(cats.items.every((p) => p.species === "cat")).toBe(true);

    const upd = await svc.call(`/service/api/v1/pets/${created[0]}`, auth(tokenB, { ...json({ name: "Renamed", owner_note: "vet on friday" }), method: "PATCH" }));
    expect(upd.status).toBe(200);
    const got = (await (await svc.call(`/service/api/v1/pets/${created[0]}`, auth(tokenB))).json()) as { name: string; owner_note: string };
    expect(got).toMatchObject({ name: "Renamed", owner_note: "vet on friday" });

    expect((await svc.call(`/service/api/v1/pets/${created[1]}`, auth(tokenB, { method: "DELETE" }))).status).toBe(204);
    expect((await svc.call(`/service/api/v1/pets/${created[1]}`, auth(tokenB))).status).toBe(404);
  });

  test("a tenant cannot see, change or delete another tenant's pets", async () => {
    const res = await svc.call("/service/api/v1/pets", auth(tokenA, json({ name: "Secret", species: "fish" })));
    const { id } = (await res.json()) as { id: string };
    expect((await svc.call(`/service/api/v1/pets/${id}`, auth(tokenB))).status).toBe(404);
    expect((await svc.call(`/service/api/v1/pets/${id}`, auth(tokenB, { ...json({ name: "x" }), method: "PATCH" }))).status).toBe(404);
    expect((await svc.call(`/service/api/v1/pets/${id}`, auth(tokenB, { method: "DELETE" }))).status).toBe(404);
    const listB = (await (await svc.call("/service/api/v1/pets?limit=100", auth(tokenB))).json()) as { items: { id: string }[] };
    expect(listB.items.some((p) => p.id === id)).toBe(false);
    expect((await svc.call(`/service/api/v1/pets/${id}`, auth(tokenA))).status).toBe(200);
  });
});

describe("docs", () => {
  test("OpenAPI 3.1 document from the valibot schemas, explorer served locally", async () => {
    const spec = (await (await svc.call("/docs/openapi.json")).json()) as { openapi: string; paths: Record<string, any> };
    expect(spec.openapi).toStartWith("3.1");
    const post = spec.paths["/service/api/v1/pets"].post;
    expect(JSON.stringify(post.requestBody)).toContain("species");
    const page = await (await svc.call("/docs")).text();
    expect(page).toContain('src="/docs/scalar.js"');
    expect(page).not.toMatch(/https?:\/\//);
    expect(page).not.toMatch(/<script>[^<]/); // no inline script: the page runs under script-src 'self'
    const init = await (await svc.call("/docs/init.js")).text();
    expect(init).toContain('"withDefaultFonts":false');
    expect(post.tags).toEqual(["machines: /service, OAuth bearer token"]);
    expect(spec.paths["/browser/api/v1/pets"].post.security).toEqual([{ session: [] }]);
    const script = await svc.call("/docs/scalar.js");
    expect(script.status).toBe(200);
    expect((await script.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
  });
});

describe("logs", () => {
  test("structured JSON with request ids and no token or secret in any line", async () => {
    expect(svc.logs.length).toBeGreaterThan(0);
    for (const line of svc.logs) {
      const rec = JSON.parse(line) as Record<string, unknown>;
      expect(rec.time).toBeString();
      expect(line).not.toContain(tokenA);
      expect(line).not.toContain(svc.adminToken);
      expect(line).not.toContain("vet on friday");
    }
    expect(svc.logs.some((l) => l.includes('"request_id"'))).toBe(true);
  });
});

describe("rate limit", () => {
  test("a burst beyond the bucket gets 429 with Retry-After", async () => {
    const root = tempDir();
    const small = await startTestService(learnPs, {
      issuer,
      root,
      overrides: (c) => {
        c.security.rate_limit_rps = 1;
        c.security.rate_limit_burst = 5;
      },
    });
    try {
      const statuses = await Promise.all(Array.from({ length: 12 }, () => small.call("/service/api/v1/pets", auth(tokenA)).then((r) => r)));
      const limited = statuses.filter((r) => r.status === 429);
      expect(statuses.filter((r) => r.status === 200).length).toBe(5);
      expect(limited.length).toBe(7);
      expect(Number(limited[0]!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    } finally {
      await small.stop();
    }
  });
});

describe("IP allowlist", () => {
  test("an address outside the allowlist is refused with 403", async () => {
    const blocked = await startTestService(learnPs, { issuer, overrides: (c) => (c.security.ip_allowlist = ["10.0.0.0/8"]) });
    try {
      const res = await blocked.call("/service/api/v1/pets", auth(tokenA));
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("ip_not_allowed");
    } finally {
      await blocked.stop();
    }
  });
});

describe("barrier, restart and data at rest", () => {
  test("sealed -> readyz 503 and data operations 503; unseal -> ready again", async () => {
    const root = tempDir();
    const s = await startTestService(learnPs, { issuer, root });
    try {
      const admin = { headers: { authorization: `Bearer ${s.adminToken}` }, method: "POST" };
      expect((await s.admin("/admin/v1/barrier/seal", admin)).status).toBe(200);
      const ready = await s.admin("/admin/v1/readyz");
      expect(ready.status).toBe(503);
      const create = await s.call("/service/api/v1/pets", auth(tokenA, json({ name: "N", species: "dog", owner_note: "n" })));
      expect(create.status).toBe(503);
      expect(((await create.json()) as { error: { code: string } }).error.code).toBe("sealed");
      expect((await s.admin("/admin/v1/barrier/unseal", admin)).status).toBe(200);
      expect((await s.admin("/admin/v1/readyz")).status).toBe(200);
    } finally {
      await s.stop();
    }
  });

  test("restart keeps data, certificates and the trust bundle; rotation keeps old data readable", async () => {
    const root = tempDir();
    const first = await startTestService(learnPs, { issuer, root });
    const note = `note-${crypto.randomUUID()}`;
    const res = await first.call("/service/api/v1/pets", auth(tokenA, json({ name: "Persisted", species: "rabbit", owner_note: note })));
    const { id } = (await res.json()) as { id: string };
    const admin = { headers: { authorization: `Bearer ${first.adminToken}` }, method: "POST" };
    for (const layer of ["content", "intermediate", "root"]) {
      expect((await first.admin(`/admin/v1/barrier/rotate/${layer}`, admin)).status).toBe(200);
    }
    const certBefore = readFileSync(first.trustBundlePath, "utf8");
    const leafBefore = (await (await first.admin("/admin/v1/healthz")).json()) as { tls: { serialNumber: string } };
    await first.stop();

    const second = await startTestService(learnPs, { issuer, root });
    try {
      const got = (await (await second.call(`/service/api/v1/pets/${id}`, auth(tokenA))).json()) as { owner_note: string };
      expect(got.owner_note).toBe(note);
      expect(readFileSync(second.trustBundlePath, "utf8")).toBe(certBefore);
      const leafAfter = (await (await second.admin("/admin/v1/healthz")).json()) as { tls: { serialNumber: string } };
      expect(leafAfter.tls.serialNumber).toBe(leafBefore.tls.serialNumber);
    } finally {
      await second.stop();
    }

    // At rest: neither the note, nor the admin token, nor any PEM private key is in the database files.
    const files = readdirSync(first.dataDir).filter((f) => f.includes(".db"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const bytes = readFileSync(join(first.dataDir, f));
      expect(bytes.includes(Buffer.from(note))).toBe(false);
      expect(bytes.includes(Buffer.from("PRIVATE KEY"))).toBe(false);
    }
    const tlsFiles = readdirSync(join(first.dataDir, "tls"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(tlsFiles.length).toBeGreaterThan(0);
    for (const e of tlsFiles) {
      expect(readFileSync(join(e.parentPath, e.name)).includes(Buffer.from("PRIVATE KEY"))).toBe(false);
    }
    expect(existsSync(join(root, "suite-ca"))).toBe(true);
  });

  test("graceful shutdown lets an in-flight request finish and then refuses new ones", async () => {
    const s = await startTestService(learnPs, { issuer });
    const enc = new TextEncoder();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The body arrives in two parts, the second only after shutdown has begun.
    const body = new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(enc.encode('{"name":"Slow",'));
        await gate;
        c.enqueue(enc.encode('"species":"dog"}'));
        c.close();
      },
    });
    const inflight = s.call("/service/api/v1/pets", {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${tokenA}`, "content-type": "application/json" },
      duplex: "half",
    } as RequestInit);
    await Bun.sleep(200);
    const res = await s.admin("/admin/v1/shutdown", { method: "POST", headers: { authorization: `Bearer ${s.adminToken}` } });
    expect(res.status).toBe(202);
    await Bun.sleep(200);
    release();
    const done = await inflight;
    expect(done.status).toBe(201);
    await s.stopped;
    await expect(s.call("/service/api/v1/pets", auth(tokenA))).rejects.toThrow();
  });

  test("a graceful stop answers new requests on kept-alive connections 503 shutting_down with Connection: close", async () => {
    const s = await startTestService(learnPs, { issuer });
    expect((await s.call("/service/api/v1/pets", auth(tokenA))).status).toBe(200); // a kept-alive connection
    expect((await s.admin("/admin/v1/shutdown", { method: "POST", headers: { authorization: `Bearer ${s.adminToken}` } })).status).toBe(202);
    // Until the stop begins the answers are 200; then, for the drain's grace, 503 (never a reset).
    let drained: Response | undefined;
    for (let i = 0; i < 100 && !drained; i++) {
      const r = await s.call("/service/api/v1/pets", auth(tokenA));
      if (r.status === 503) drained = r;
      else expect(r.status).toBe(200);
    }
    expect(drained).toBeDefined();
    expect(drained!.headers.get("connection")).toBe("close");
    expect(((await drained!.json()) as { error: { code: string } }).error.code).toBe("shutting_down");
    await s.stopped;
    await expect(s.call("/service/api/v1/pets", auth(tokenA))).rejects.toThrow();
  });

});
