/**
 * sm-kms over real HTTPS: rotation and the minimum decryption version, rewrap, tenant
 * isolation, disabled and pending-deletion keys, tampering, malformed input, scopes, batches.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { compactVerify, decodeProtectedHeader, importJWK } from "jose";
import { b64u, startKms, text, type Kms } from "./harness.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms((c) => {
    c.app = { batch_max: 5 };
    c.server.body_limit = 256 * 1024;
  });
});
afterAll(async () => {
  await kms?.stop();
});

const create = async (name: string, algorithm: string, tenant = "tenant-a") => {
  const r = await kms.req("POST", "/keys", { name, algorithm }, { tenant });
  expect(r.status).toBe(201);
  return r.body.id as string;
};

/** Flips one character in the middle of segment `i` of a compact JOSE string. */
function tamper(compact: string, i: number): string {
  const parts = compact.split(".");
  const s = parts[i]!;
  const at = s.length >> 1;
  parts[i] = s.slice(0, at) + (s[at] === "A" ? "B" : "A") + s.slice(at + 1);
  return parts.join(".");
}

describe("rotation", () => {
  test("v1 data decrypts after three rotations; min decryption version refuses it; rewrap moves it to the latest", async () => {
    const id = await create("rot", "A256GCM");
    const v1 = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("from v1"), context: { app: "x" } });
    expect(v1.body.kid).toBe(`${id}.v1`);
    for (let i = 2; i <= 4; i++) expect((await kms.req("POST", `/keys/${id}/rotate`)).body.current_version).toBe(i);
    const fresh = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("from v4") });
    expect(fresh.body.kid).toBe(`${id}.v4`);
    const old = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: v1.body.jwe, context: { app: "x" } });
    expect([old.status, text(old.body.plaintext), old.body.kid]).toEqual([200, "from v1", `${id}.v1`]);

    // Rewrap before raising the minimum: the new JWE names v4 and still needs the context.
    const rewrapped = await kms.req("POST", `/keys/${id}/rewrap`, { jwe: v1.body.jwe, context: { app: "x" } });
    expect(rewrapped.body.kid).toBe(`${id}.v4`);
    expect(decodeProtectedHeader(rewrapped.body.jwe).kid).toBe(`${id}.v4`);
    expect(rewrapped.body.plaintext).toBeUndefined();

    const raised = await kms.req("PATCH", `/keys/${id}`, { min_decryption_version: 4 });
    expect(raised.body.min_decryption_version).toBe(4);
    const refused = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: v1.body.jwe, context: { app: "x" } });
    expect([refused.status, refused.body.error.code]).toEqual([409, "key_version_below_minimum"]);
    const again = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: rewrapped.body.jwe, context: { app: "x" } });
    expect(text(again.body.plaintext)).toBe("from v1");
    expect((await kms.req("PATCH", `/keys/${id}`, { min_decryption_version: 5 })).body.error.code).toBe("validation_failed");

    const got = await kms.req("GET", `/keys/${id}`);
    expect(got.body.versions.map((v: { kid: string }) => v.kid)).toEqual([1, 2, 3, 4].map((n) => `${id}.v${n}`));
  });

  test("signatures by an old version still verify; the public key of each version is exported", async () => {
    const id = await create("rot-sig", "ES256");
    const s1 = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u("v1") });
    await kms.req("POST", `/keys/${id}/rotate`);
    const s2 = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u("v2") });
    expect(s2.body.kid).toBe(`${id}.v2`);
    expect((await kms.req("POST", `/keys/${id}/verify`, { jws: s1.body.jws })).body.kid).toBe(`${id}.v1`);
    const pub1 = await kms.req("GET", `/keys/${id}/public-key?version=1`);
    await compactVerify(s1.body.jws, await importJWK(pub1.body, "ES256"));
    const pub2 = await kms.req("GET", `/keys/${id}/public-key`);
    expect(pub2.body.kid).toBe(`${id}.v2`);
    await expect(compactVerify(s1.body.jws, await importJWK(pub2.body, "ES256"))).rejects.toThrow();
    expect((await kms.req("GET", `/keys/${id}/public-key?version=3`)).status).toBe(404);
  });
});

describe("tenant isolation", () => {
  test("another tenant's key is 404 for every operation, and absent from its list", async () => {
    const id = await create("mine", "A256GCM", "tenant-a");
    const enc = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("a") });
    const asB = { tenant: "tenant-b" };
    const calls: Array<[string, string, unknown]> = [
      ["GET", `/keys/${id}`, undefined],
      ["PATCH", `/keys/${id}`, { tags: ["x"] }],
      ["POST", `/keys/${id}/rotate`, undefined],
      ["POST", `/keys/${id}/disable`, undefined],
      ["POST", `/keys/${id}/schedule-deletion`, {}],
      ["POST", `/keys/${id}/encrypt`, { plaintext: b64u("b") }],
      ["POST", `/keys/${id}/decrypt`, { jwe: enc.body.jwe }],
      ["POST", `/keys/${id}/rewrap`, { jwe: enc.body.jwe }],
      ["POST", `/keys/${id}/data-key`, {}],
    ];
    for (const [m, p, b] of calls) {
      const r = await kms.req(m, p, b, asB);
      expect([p, r.status, r.body.error.code]).toEqual([p, 404, "not_found"]);
    }
    // A batch on another tenant's key is refused as a whole, like the single routes.
    const batch = await kms.req("POST", `/keys/${id}/batch/decrypt`, { items: [{ jwe: enc.body.jwe }] }, asB);
    expect([batch.status, batch.body.error.code]).toEqual([404, "not_found"]);
    const list = await kms.req("GET", "/keys", undefined, asB);
    expect(list.body.items.some((k: { id: string }) => k.id === id)).toBe(false);
    expect((await kms.req("GET", `/keys/${id}`)).status).toBe(200);
  });
});

describe("key status", () => {
  test("disabled keys are refused, enabled again work; pending deletion is refused until restored", async () => {
    const id = await create("status", "ES384");
    const signed = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u("p") });
    expect((await kms.req("POST", `/keys/${id}/disable`)).body.status).toBe("disabled");
    for (const [p, b] of [[`/keys/${id}/sign`, { payload: b64u("p") }], [`/keys/${id}/verify`, { jws: signed.body.jws }]] as const) {
      const r = await kms.req("POST", p, b);
      expect([r.status, r.body.error.code]).toEqual([409, "key_disabled"]);
    }
    await kms.req("POST", `/keys/${id}/enable`);
    expect((await kms.req("POST", `/keys/${id}/verify`, { jws: signed.body.jws })).status).toBe(200);

    const bad = await kms.req("POST", `/keys/${id}/schedule-deletion`, { waiting_period_days: 6 });
    expect(bad.status).toBe(400);
    const sched = await kms.req("POST", `/keys/${id}/schedule-deletion`, { waiting_period_days: 7 });
    expect(sched.body.status).toBe("pending_deletion");
    const days = (Date.parse(sched.body.deletion_date) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThanOrEqual(7);
    for (const [p, b] of [[`/keys/${id}/sign`, { payload: b64u("p") }], [`/keys/${id}/verify`, { jws: signed.body.jws }], [`/keys/${id}/rotate`, undefined], [`/keys/${id}/enable`, undefined]] as const) {
      const r = await kms.req("POST", p, b);
      expect([p, r.status, r.body.error.code]).toEqual([p, 409, "key_pending_deletion"]);
    }
    const listed = await kms.req("GET", "/keys?status=pending_deletion");
    expect(listed.body.items.map((k: { id: string }) => k.id)).toContain(id);
    expect((await kms.req("POST", `/keys/${id}/restore`)).body.status).toBe("disabled");
    await kms.req("POST", `/keys/${id}/enable`);
    expect((await kms.req("POST", `/keys/${id}/sign`, { payload: b64u("p") })).status).toBe(200);
  });
});

describe("decrypt and key status", () => {
  test("decrypt, rewrap and data keys are refused on disabled and pending-deletion keys", async () => {
    const id = await create("status-enc", "A256KW");
    const { jwe } = (await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("kept") })).body;
    const ops: Array<[string, unknown]> = [[`/keys/${id}/decrypt`, { jwe }], [`/keys/${id}/rewrap`, { jwe }], [`/keys/${id}/data-key`, {}], [`/keys/${id}/encrypt`, { plaintext: "aGk" }]];
    await kms.req("POST", `/keys/${id}/disable`);
    for (const [p, b] of ops) expect([p, (await kms.req("POST", p, b)).body.error.code]).toEqual([p, "key_disabled"]);
    await kms.req("POST", `/keys/${id}/schedule-deletion`, {});
    for (const [p, b] of ops) expect([p, (await kms.req("POST", p, b)).body.error.code]).toEqual([p, "key_pending_deletion"]);
    await kms.req("POST", `/keys/${id}/restore`);
    await kms.req("POST", `/keys/${id}/enable`);
    expect(text((await kms.req("POST", `/keys/${id}/decrypt`, { jwe })).body.plaintext)).toBe("kept");
  });

  test("public key export: encrypt or verify scope suffices, mac alone does not", async () => {
    const id = await create("pub-scope", "ECDH-ES");
    expect((await kms.req("GET", `/keys/${id}/public-key`, undefined, { token: await kms.token("tenant-a", "kms:encrypt") })).status).toBe(200);
    const r = await kms.req("GET", `/keys/${id}/public-key`, undefined, { token: await kms.token("tenant-a", "kms:mac") });
    expect([r.status, r.body.error.code]).toEqual([403, "insufficient_scope"]);
    expect((await kms.req("GET", `/keys/${id}/public-key`, undefined, { tenant: "tenant-b" })).status).toBe(404);
  });
});

describe("tampering and malformed input", () => {
  test("tampered JWE and JWS are refused with one stable code each", async () => {
    const encId = await create("tamper-enc", "A256GCM");
    const sigId = await create("tamper-sig", "ES256");
    const { jwe } = (await kms.req("POST", `/keys/${encId}/encrypt`, { plaintext: b64u("do not touch") })).body;
    for (const seg of [2, 3, 4]) {
      const r = await kms.req("POST", `/keys/${encId}/decrypt`, { jwe: tamper(jwe, seg) });
      expect([seg, r.status, r.body.error.code]).toEqual([seg, 400, "decryption_failed"]);
    }
    const { jws } = (await kms.req("POST", `/keys/${sigId}/sign`, { payload: b64u("signed") })).body;
    for (const seg of [1, 2]) {
      const r = await kms.req("POST", `/keys/${sigId}/verify`, { jws: tamper(jws, seg) });
      expect([seg, r.status, r.body.error.code]).toEqual([seg, 400, "signature_invalid"]);
    }
    // A JWE of one key given to another key (kid names the wrong key).
    const otherId = await create("tamper-other", "A256GCM");
    expect((await kms.req("POST", `/keys/${otherId}/decrypt`, { jwe })).body.error.code).toBe("decryption_failed");
    // Algorithm substitution: a header claiming another alg is refused, not tried.
    const [, ...rest] = jwe.split(".");
    const forged = [b64u(JSON.stringify({ ...decodeProtectedHeader(jwe), alg: "A256KW" })), ...rest].join(".");
    expect((await kms.req("POST", `/keys/${encId}/decrypt`, { jwe: forged })).body.error.code).toBe("decryption_failed");
  });

  test("malformed JOSE, wrong types, bad ids, bad JSON, wrong media type and oversized bodies are 4xx with stable codes", async () => {
    const id = await create("malformed", "A256GCM");
    const sig = await create("malformed-sig", "EdDSA");
    const cases: Array<[string, unknown, number, string]> = [
      [`/keys/${id}/decrypt`, { jwe: "not.a.jwe" }, 400, "malformed_jose"],
      [`/keys/${id}/decrypt`, { jwe: "a.b.c.d.e" }, 400, "malformed_jose"],
      [`/keys/${id}/decrypt`, { jwe: "" }, 400, "validation_failed"],
      [`/keys/${id}/decrypt`, { jwe: 42 }, 400, "validation_failed"],
      [`/keys/${sig}/verify`, { jws: "x" }, 400, "malformed_jose"],
      [`/keys/${sig}/verify`, { jws: "!!!.e30.AA" }, 400, "malformed_jose"],
      [`/keys/${id}/encrypt`, { plaintext: "has space" }, 400, "validation_failed"],
      [`/keys/${id}/encrypt`, { plaintext: "aGk", extra: 1 }, 400, "validation_failed"],
      [`/keys/${id}/encrypt`, { plaintext: "aGk", context: { a: 1 } }, 400, "validation_failed"],
      [`/keys/not-a-uuid/encrypt`, { plaintext: "aGk" }, 400, "validation_failed"],
      [`/keys/${crypto.randomUUID()}/encrypt`, { plaintext: "aGk" }, 404, "not_found"],
      ["/keys", { name: "x", algorithm: "A128CBC" }, 400, "validation_failed"],
      ["/keys", { name: "x", algorithm: "ES256", purpose: "encrypt" }, 400, "validation_failed"],
    ];
    for (const [p, b, status, code] of cases) {
      const r = await kms.req("POST", p, b);
      expect([p, JSON.stringify(b), r.status, r.body.error.code]).toEqual([p, JSON.stringify(b), status, code]);
    }
    expect((await kms.req("POST", `/keys/${id}/encrypt`, undefined, { raw: "{nope" })).body.error.code).toBe("malformed_json");
    expect((await kms.req("POST", `/keys/${id}/encrypt`, undefined, { raw: "x", contentType: "text/plain" })).status).toBe(415);
    const big = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: "A".repeat(300 * 1024) });
    // Bun's own body limit answers first (a bare 413), before the pipeline's JSON error body.
    expect(big.status).toBe(413);
    // Under the body limit but over the plaintext limit (64 KiB): the schema refuses it.
    const over = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: "A".repeat(100 * 1024) });
    expect([over.status, over.body.error.code]).toEqual([400, "validation_failed"]);
    const dup = await kms.req("POST", "/keys", { name: "malformed", algorithm: "A256GCM" });
    expect([dup.status, dup.body.error.code]).toEqual([409, "conflict"]);
  });

  test("scopes: each operation needs its own scope; /browser needs a session", async () => {
    const id = await create("scoped", "A256GCM");
    const encOnly = await kms.token("tenant-a", "kms:encrypt");
    expect((await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: "aGk" }, { token: encOnly })).status).toBe(200);
    for (const [m, p, b] of [["POST", `/keys/${id}/decrypt`, { jwe: "a.b.c.d.e" }], ["GET", "/keys", undefined], ["POST", `/keys/${id}/rotate`, undefined]] as const) {
      const r = await kms.req(m, p, b, { token: encOnly });
      expect([p, r.status, r.body.error.code]).toEqual([p, 403, "insufficient_scope"]);
    }
    const res = await kms.svc.call(`/browser/api/v1/keys/${id}`);
    expect(res.status).toBe(401);
  });
});

describe("list", () => {
  test("filters by purpose and tag, paginates", async () => {
    const t = { tenant: "tenant-list" };
    for (const [name, algorithm, tags] of [["l1", "HS256", ["blue"]], ["l2", "ES256", []], ["l3", "HS384", []], ["l4", "HS512", ["blue"]]] as const) {
      expect((await kms.req("POST", "/keys", { name, algorithm, tags }, t)).status).toBe(201);
    }
    const p1 = await kms.req("GET", "/keys?purpose=mac&limit=2", undefined, t);
    expect(p1.body.items.map((k: { name: string }) => k.name)).toEqual(["l1", "l3"]);
    const p2 = await kms.req("GET", `/keys?purpose=mac&limit=2&page_token=${p1.body.next_page_token}`, undefined, t);
    expect(p2.body.items.map((k: { name: string }) => k.name)).toEqual(["l4"]);
    expect(p2.body.next_page_token).toBeNull();
    expect((await kms.req("GET", "/keys?tag=blue", undefined, t)).body.items.map((k: { name: string }) => k.name)).toEqual(["l1", "l4"]);
    expect((await kms.req("GET", "/keys?purpose=nope", undefined, t)).status).toBe(400);
  });
});

describe("batches", () => {
  test("one bad item reports its own error; the others succeed", async () => {
    const id = await create("batch", "A256GCM");
    const sig = await create("batch-sig", "PS256");
    const enc = await kms.req("POST", `/keys/${id}/batch/encrypt`, { items: [{ plaintext: b64u("one") }, { plaintext: b64u("two"), context: { k: "v" } }] });
    expect(enc.status).toBe(200);
    const [a, b] = enc.body.results;
    const dec = await kms.req("POST", `/keys/${id}/batch/decrypt`, {
      items: [{ jwe: a.jwe }, { jwe: tamper(a.jwe, 3) }, { jwe: b.jwe, context: { k: "v" } }, { jwe: "garbage" }],
    });
    expect(dec.status).toBe(200);
    expect(text(dec.body.results[0].plaintext)).toBe("one");
    expect(dec.body.results[1].error.code).toBe("decryption_failed");
    expect(text(dec.body.results[2].plaintext)).toBe("two");
    expect(dec.body.results[3].error.code).toBe("malformed_jose");

    const signed = await kms.req("POST", `/keys/${sig}/batch/sign`, { items: [{ payload: b64u("x") }, { payload: b64u("y"), detached: true }] });
    const [s1, s2] = signed.body.results;
    const ver = await kms.req("POST", `/keys/${sig}/batch/verify`, {
      items: [{ jws: s1.jws }, { jws: s2.jws, payload: b64u("y") }, { jws: tamper(s1.jws, 2) }],
    });
    expect(ver.body.results.map((r: { valid?: boolean; error?: { code: string } }) => r.valid ?? r.error!.code)).toEqual([true, true, "signature_invalid"]);

    const tooMany = await kms.req("POST", `/keys/${id}/batch/encrypt`, { items: Array.from({ length: 6 }, () => ({ plaintext: "aGk" })) });
    expect([tooMany.status, tooMany.body.error.code]).toEqual([400, "batch_too_large"]);
    expect((await kms.req("POST", `/keys/${id}/batch/encrypt`, { items: [] })).status).toBe(400);
  });
});

describe("API document", () => {
  test("the OpenAPI document lists the key routes under both prefixes", async () => {
    const doc = await (await kms.svc.call("/docs/openapi.json")).json();
    for (const p of ["/service/api/v1/keys/{id}/encrypt", "/browser/api/v1/keys/{id}/sign", "/service/api/v1/keys/{id}/batch/verify"]) expect(Object.keys(doc.paths)).toContain(p);
  });
});
