/**
 * Issue 14 (8): a batch on another tenant's key (or an unknown one) is refused as a whole with
 * 404, as the single-item routes do, instead of 200 with a not_found per item.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { b64u, startKms, type Kms } from "./harness.ts";

let k: Kms;
beforeAll(async () => {
  k = await startKms((c) => (c.log.access = false));
});
afterAll(async () => {
  await k?.stop();
});

test("every batch route: 404 for another tenant's key and an unknown key; the owner's batch works", async () => {
  const enc = (await k.req("POST", "/keys", { name: "batch-enc", algorithm: "A256GCM" })).body.id as string;
  const sig = (await k.req("POST", "/keys", { name: "batch-sig", algorithm: "ES256" })).body.id as string;
  const own = await k.req("POST", `/keys/${enc}/batch/encrypt`, { items: [{ plaintext: b64u("a") }, { plaintext: b64u("b") }] });
  expect(own.status).toBe(200);
  const jwe = own.body.results[0].jwe as string;
  const signed = await k.req("POST", `/keys/${sig}/batch/sign`, { items: [{ payload: b64u("p") }] });
  expect(signed.status).toBe(200);
  const jws = signed.body.results[0].jws as string;

  const unknown = "00000000-0000-4000-8000-000000000000";
  const cases: Array<[string, string, unknown]> = [
    [enc, "encrypt", { items: [{ plaintext: b64u("a") }] }],
    [enc, "decrypt", { items: [{ jwe }] }],
    [sig, "sign", { items: [{ payload: b64u("p") }] }],
    [sig, "verify", { items: [{ jws, payload: b64u("p") }] }],
  ];
  for (const [id, op, body] of cases) {
    for (const [key, tenant] of [[id, "tenant-b"], [unknown, "tenant-a"]] as const) {
      const r = await k.req("POST", `/keys/${key}/batch/${op}`, body, { tenant });
      expect([op, r.status, r.body.error?.code]).toEqual([op, 404, "not_found"]);
      // The same answer as the single-item route on the other tenant's key.
      if (key === id) expect((await k.req("POST", `/keys/${key}/${op}`, (body as { items: unknown[] }).items[0], { tenant })).status).toBe(404);
    }
  }
});
