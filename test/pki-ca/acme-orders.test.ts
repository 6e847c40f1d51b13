/**
 * pki-ca's ACME orders beyond the basic flow: authorizations reused by the same account's later
 * orders while they live (RFC 8555 §7.1.4), never across accounts nor once deactivated; and the
 * validity an order asks for (`notBefore`/`notAfter`, RFC 8555 §7.4), within the profile's
 * maximum, carried into the issued certificate, refused as malformed otherwise; and an order
 * whose validated authorization is deactivated before finalize (RFC 8555 §7.5.2) is invalid and
 * cannot be finalized.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { CaFixture } from "./helpers.ts";
import { csrFor, startAcmeCa, startHttp01, TestAcme } from "./acme-helpers.ts";

let f: CaFixture;
let http01: ReturnType<typeof startHttp01>;
let dirUrl: string;

beforeAll(async () => {
  http01 = startHttp01();
  f = await startAcmeCa(http01.port);
  dirUrl = `${f.svc.publicUrl}/acme/acme/directory`;
});
afterAll(async () => {
  await f?.stop();
  http01?.stop();
});

const dns = (value: string) => ({ type: "dns" as const, value });

async function client(): Promise<TestAcme> {
  const c = await TestAcme.create(dirUrl, f.svc.ca);
  expect((await c.register()).status).toBe(201);
  return c;
}

async function newOrder(c: TestAcme, payload: Record<string, unknown>): Promise<{ status: number; url: string; body: any }> {
  const r = await c.post(c.dir.newOrder!, payload);
  return { status: r.status, url: r.headers.get("location") ?? "", body: await r.json() };
}

const issuedCount = async () => {
  const tok = await f.token("acme", "pki:read");
  return ((await (await f.api("/certificates?limit=100", tok)).json()) as { items: unknown[] }).items.length;
};

describe("authorization reuse", () => {
  test("a valid authorization is reused by the account's next order, which is ready at once and issues", async () => {
    const c = await client();
    const first = await c.orderReady([dns("reuse.localhost")], http01);
    expect(first.order.status).toBe("ready");
    const authz = first.order.authorizations[0];
    const validated = (await (await c.post(authz, "")).json()) as any;
    expect(validated.status).toBe("valid");
    // Valid for the configured lifetime (a week by default), longer than a pending order lives.
    expect(Date.parse(validated.expires)).toBeGreaterThan(Date.now() + 6 * 24 * 3_600_000);

    const second = await newOrder(c, { identifiers: [dns("reuse.localhost")] });
    expect(second.status).toBe(201);
    expect(second.body.authorizations).toEqual([authz]);
    const ready = await c.poll(second.url, (o) => o.status !== "pending");
    expect(ready.status).toBe("ready");
    const { leaf } = await c.issue(second.url, ready, ["reuse.localhost"]);
    expect(leaf.subject).toContain("reuse.localhost");

    // A mixed order: the valid one reused, a new one for the other name.
    const mixed = await newOrder(c, { identifiers: [dns("reuse.localhost"), dns("reuse-2.localhost")] });
    expect(mixed.body.authorizations).toHaveLength(2);
    expect(mixed.body.authorizations).toContain(authz);
    expect(mixed.body.status).toBe("pending");
  });

  test("a pending authorization is shared: answering it once readies both orders", async () => {
    const c = await client();
    const a = await newOrder(c, { identifiers: [dns("pending-share.localhost")] });
    const b = await newOrder(c, { identifiers: [dns("pending-share.localhost")] });
    expect(b.body.authorizations).toEqual(a.body.authorizations);
    const az = (await (await c.post(a.body.authorizations[0], "")).json()) as any;
    const ch = az.challenges.find((x: any) => x.type === "http-01");
    http01.tokens.set(ch.token, `${ch.token}.${await c.thumbprint()}`);
    expect((await c.post(ch.url, {})).status).toBe(200);
    expect((await c.poll(a.url, (o) => o.status !== "pending")).status).toBe("ready");
    expect((await c.poll(b.url, (o) => o.status !== "pending")).status).toBe("ready");
  });

  test("never across accounts, and not once deactivated", async () => {
    const c = await client();
    const { order } = await c.orderReady([dns("mine.localhost")], http01);
    const authz = order.authorizations[0];
    const other = await client();
    const theirs = await newOrder(other, { identifiers: [dns("mine.localhost")] });
    expect(theirs.body.authorizations[0]).not.toBe(authz);
    expect(theirs.body.status).toBe("pending");

    expect((await c.post(authz, { status: "deactivated" })).status).toBe(200);
    const after = await newOrder(c, { identifiers: [dns("mine.localhost")] });
    expect(after.body.authorizations[0]).not.toBe(authz);
    expect(((await (await c.post(after.body.authorizations[0], "")).json()) as any).status).toBe("pending");
  });
});

describe("an authorization deactivated before finalize", () => {
  test("the ready order becomes invalid, finalize is refused with orderNotReady (403), nothing is issued", async () => {
    const c = await client();
    const { url, order } = await c.orderReady([dns("deactivated-late.localhost")], http01);
    expect(order.status).toBe("ready");
    const authz = order.authorizations[0];
    const d = await c.post(authz, { status: "deactivated" });
    expect(d.status).toBe(200);
    expect(((await d.json()) as any).status).toBe("deactivated");
    const before = await issuedCount();

    const now = (await (await c.post(url, "")).json()) as any;
    expect(now.status).toBe("invalid");
    expect(now.error.type).toBe("urn:ietf:params:acme:error:unauthorized");
    expect(now.error.detail).toContain("deactivated");
    expect(now.certificate).toBeUndefined();

    const { der } = await csrFor(["deactivated-late.localhost"]);
    const fr = await c.post(order.finalize, { csr: Buffer.from(der).toString("base64url") });
    expect(fr.status).toBe(403);
    expect(fr.headers.get("content-type")).toContain("application/problem+json");
    expect(((await fr.json()) as any).type).toBe("urn:ietf:params:acme:error:orderNotReady");
    // The order stays invalid, with no certificate, and the CA issued nothing.
    const after = (await (await c.post(url, "")).json()) as any;
    expect(after.status).toBe("invalid");
    expect(after.certificate).toBeUndefined();
    expect(await issuedCount()).toBe(before);
    // The deactivated authorization is not reused: a new order for the name needs a new one.
    const again = await newOrder(c, { identifiers: [dns("deactivated-late.localhost")] });
    expect(again.body.authorizations[0]).not.toBe(authz);
    expect(again.body.status).toBe("pending");
  });
});

describe("notBefore and notAfter", () => {
  const at = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString();

  test("both: echoed in the order and carried into the certificate", async () => {
    const c = await client();
    const notBefore = at(Date.now() + 3_600_000);
    const notAfter = at(Date.now() + 10 * 86_400_000);
    const { url, order } = await c.orderReady([dns("window.localhost")], http01, { notBefore, notAfter });
    expect(order.notBefore).toBe(notBefore);
    expect(order.notAfter).toBe(notAfter);
    const { leaf } = await c.issue(url, order, ["window.localhost"]);
    expect(leaf.notBefore.toISOString()).toBe(notBefore);
    expect(leaf.notAfter.toISOString()).toBe(notAfter);
  });

  test("notAfter alone: the certificate ends then (the profile's maximum is 90 days)", async () => {
    const c = await client();
    // The profile's whole maximum: still within it when finalized a moment later.
    const notAfter = at(Date.now() + 90 * 86_400_000 - 5_000);
    const { url, order } = await c.orderReady([dns("until.localhost")], http01, { notAfter });
    expect(order.notBefore).toBeUndefined();
    const { leaf } = await c.issue(url, order, ["until.localhost"]);
    expect(leaf.notAfter.toISOString()).toBe(notAfter);
    expect(leaf.notBefore.getTime()).toBeLessThanOrEqual(Date.now());
  });

  test("refused as malformed, nothing ordered: beyond the maximum, in the past, reversed, not a time, a manual-approval profile", async () => {
    const c = await client();
    const before = await issuedCount();
    const day = 86_400_000;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ notAfter: at(Date.now() + 91 * day) }, /maximum of 90 days/],
      [{ notBefore: at(Date.now() + day), notAfter: at(Date.now() + 92 * day) }, /maximum of 90 days/],
      [{ notBefore: at(Date.now() - 3_600_000) }, /past/],
      [{ notBefore: at(Date.now() + 2 * day), notAfter: at(Date.now() + day) }, /later than notBefore/],
      [{ notAfter: at(Date.now() - day) }, /later than notBefore and than now/],
      [{ notAfter: "tomorrow" }, /RFC 3339/],
      [{ notBefore: 1_900_000_000 }, /RFC 3339/],
      [{ notAfter: at(Date.now() + day), profile: "acme-manual" }, /does not allow notBefore or notAfter/],
    ];
    for (const [extra, detail] of cases) {
      const r = await newOrder(c, { identifiers: [dns("refused-window.localhost")], ...extra });
      expect(r.status).toBe(400);
      expect(r.body.type).toBe("urn:ietf:params:acme:error:malformed");
      expect(r.body.detail).toMatch(detail);
    }
    const list = (await (await c.post(`${c.kid}/orders`, "")).json()) as any;
    expect(list.orders).toEqual([]);
    expect(await issuedCount()).toBe(before);
  });
});
