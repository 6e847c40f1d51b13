/**
 * learn-ps's `GET /service/api/v1/pets/{id}` is a fast route (apiRoute): it must answer exactly
 * as the Elysia route it stands in for. The same calls go to learn-ps with and without its fast
 * routes, on the same data, and the answers (status, body without the request id, headers)
 * must match: a pet, another tenant's pet, an unknown id, a malformed id, a token without
 * the scope, no token, a session cookie on /service, an overlong id, a percent-encoded id. A path
 * that is not valid percent-encoding is refused by both with 400, under different codes (see
 * below). Also: the rules on where fast routes may go.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as v from "valibot";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { apiRoute, publicHandler } from "../../src/service/http.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, tempDir } from "../support/service.ts";

let issuer: TestIssuer;
const root = tempDir();
type Answer = { status: number; body: unknown; headers: Record<string, string> };
const answers: Record<string, Answer[]> = {};

async function askAll(fast: boolean, petIds: { mine: string }): Promise<Answer[]> {
  const svc = await startTestService(fast ? learnPs : { ...learnPs, fastRoutes: undefined }, { issuer, root });
  try {
    const a = await issuer.mint({ tenant: "tenant-a", scope: "pets:read pets:write" });
    const b = await issuer.mint({ tenant: "tenant-b", scope: "pets:read" });
    const noScope = await issuer.mint({ tenant: "tenant-a", scope: "pets:write" });
    const get = (path: string, headers: Record<string, string> = {}) => svc.call(`/service/api/v1/pets/${path}`, { headers });
    const calls = [
      () => get(petIds.mine, { authorization: `Bearer ${a}` }),
      () => get(petIds.mine, { authorization: `Bearer ${b}` }),
      () => get("00000000-0000-4000-8000-000000000000", { authorization: `Bearer ${a}` }),
      () => get("not-a-uuid", { authorization: `Bearer ${a}` }),
      () => get(petIds.mine, { authorization: `Bearer ${noScope}` }),
      () => get(petIds.mine),
      () => get(petIds.mine, { authorization: `Bearer ${a}`, cookie: "__Host-cryptoutil_session=x" }),
      () => get("%E0%A4%A", { authorization: `Bearer ${a}` }),
      () => get(`${"a".repeat(5000)}`, { authorization: `Bearer ${a}` }),
      () => get(encodeURIComponent(petIds.mine), { authorization: `Bearer ${a}` }),
    ];
    const out: Answer[] = [];
    for (const call of calls) {
      const r = await call();
      const body = (await r.json()) as Record<string, any>;
      if (body.error) delete body.error.request_id;
      const headers: Record<string, string> = {};
      r.headers.forEach((val, k) => {
        if (!["date", "x-request-id", "content-length"].includes(k)) headers[k] = val;
      });
      out.push({ status: r.status, body, headers });
    }
    return out;
  } finally {
    await svc.stop();
  }
}

beforeAll(async () => {
  issuer = await startTestIssuer();
  const svc = await startTestService(learnPs, { issuer, root });
  const a = await issuer.mint({ tenant: "tenant-a", scope: "pets:read pets:write" });
  const created = await svc.call("/service/api/v1/pets", {
    method: "POST",
    headers: { authorization: `Bearer ${a}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "Rex", species: "dog", age_years: 4, tags: ["a", "b"], owner_note: "secret note" }),
  });
  const pet = (await created.json()) as { id: string };
  await svc.stop();
  answers.fast = await askAll(true, { mine: pet.id });
  answers.router = await askAll(false, { mine: pet.id });
});

afterAll(async () => {
  await issuer?.stop();
});

describe("fast API route", () => {
  test("answers every case exactly as the Elysia route does", () => {
    expect(answers.fast!.map((x) => x.status)).toEqual([200, 404, 404, 400, 403, 401, 401, 400, 400, 200]);
    // Identical, except for a path that is not valid percent-encoding: both refuse it with 400,
    // the pipeline's decoder as bad_request (it says why), Elysia as a validation failure.
    const MALFORMED = 7;
    expect(answers.fast!.filter((_, i) => i !== MALFORMED)).toEqual(answers.router!.filter((_, i) => i !== MALFORMED));
    expect((answers.fast![MALFORMED]!.body as any).error.code).toBe("bad_request");
    expect((answers.router![MALFORMED]!.body as any).error.code).toBe("validation_failed");
    expect(answers.fast![MALFORMED]!.headers).toEqual(answers.router![MALFORMED]!.headers);
    const pet = answers.fast![0]!.body as Record<string, unknown>;
    expect(pet.name).toBe("Rex");
    expect(pet.owner_note).toBe("secret note");
    expect(answers.fast![0]!.headers["content-security-policy"]).toContain("default-src 'none'");
    // Both name the failing parameter (Elysia's own flattening of the path is bypassed).
    expect((answers.router![3]!.body as any).error.details).toEqual([{ in: "params", path: "id", message: expect.stringContaining("UUID") }]);
  });

  test("may serve /service/api/ only with scopes, and never /browser/", () => {
    const handle = async () => new Response(null);
    const ok = apiRoute("/service/api/v1/things/:id", { params: v.object({ id: v.string() }), response: v.object({}), scopes: ["x:read"] }, () => ({}));
    expect(() => publicHandler({ fastRoutes: [ok], corsOrigins: [] } as never, () => undefined)).not.toThrow();
    expect(ok.pattern.test("/service/api/v1/things/abc")).toBe(true);
    expect(ok.pattern.test("/service/api/v1/things/abc/more")).toBe(false);
    expect(ok.pattern.test("/browser/api/v1/things/abc")).toBe(false);
    for (const r of [
      { method: "GET" as const, pattern: /^\/service\/api\/v1\/x$/, route: "/service/api/v1/x", handle },
      { method: "GET" as const, pattern: /^\/browser\/api\/v1\/x$/, route: "/browser/api/v1/x", scopes: ["x"], handle },
      { method: "GET" as const, pattern: /\/service\/api\/v1\/x$/, route: "/service/api/v1/x", scopes: ["x"], handle },
    ]) {
      expect(() => publicHandler({ fastRoutes: [r], corsOrigins: [] } as never, () => undefined)).toThrow(/fast route/);
    }
    expect(() => apiRoute("/browser/api/v1/x", { params: v.object({}), response: v.object({}), scopes: [] }, () => ({}))).toThrow();
  });
});
