/**
 * The SCEP RA's RSA key size (`app.scep.ra_key`, or a SCEP profile's own) across restarts on one
 * database: a profile switched from the default RSA-3072 to RSA-2048 gets an RA certificate and
 * key of its own, and switched back gets its RSA-3072 certificate again, so no key serves
 * both sizes; a profile's `ra_key` wins over app.scep's. Each RA answers a PKCSReq (built
 * in-process) with a CertRep it signs and a certificate enveloped to the requester.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as x509 from "../../src/pki/x509.ts";
import { MESSAGE_TYPE } from "../../apps/pki-ca/scep/cms.ts";
import { PROFILES, startCa, type CaFixture } from "./helpers.ts";
import { certsOf, TestScepClient } from "./scep-helpers.ts";

const STATIC = "ra-key-secret";
const challenge_sha256 = createHash("sha256").update(STATIC).digest("hex");

let f: CaFixture | undefined;
afterAll(async () => {
  await f?.stop();
}, 30_000);

/** pki-ca on `dir` (a new one when undefined) with SCEP profiles `server` and `pinned` (`ra_key: RSA-3072`). */
async function start(scep: { ra_key?: string; server?: Record<string, unknown> }, dir?: string): Promise<CaFixture> {
  const profiles = { server: { challenge_sha256, ...scep.server }, pinned: { challenge_sha256, ra_key: "RSA-3072" } };
  return startCa({ profiles: { ...PROFILES, pinned: PROFILES.server }, scep: { ...(scep.ra_key ? { ra_key: scep.ra_key } : {}), tenants: { t1: { profiles } } } }, dir);
}

async function getCaCert(fx: CaFixture, profile: string): Promise<x509.X509Certificate[]> {
  const r = await fx.svc.call(`/scep/t1/${profile}?operation=GetCACert`);
  expect(r.status).toBe(200);
  return certsOf(new Uint8Array(await r.arrayBuffer()));
}

const bits = (c: x509.X509Certificate) => (c.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength;
const spki = (c: x509.X509Certificate) => Buffer.from(c.publicKey.rawData).toString("hex");

/** A PKCSReq with the static challenge enveloped to `ra`: issued, the CertRep signed by `ra`. */
async function enroll(fx: CaFixture, profile: string, ra: x509.X509Certificate, cn: string): Promise<void> {
  const c = await TestScepClient.create(cn);
  const body = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr(cn, STATIC), ra);
  const r = await fx.svc.call(`/scep/t1/${profile}?operation=PKIOperation`, { method: "POST", body: body.slice().buffer as ArrayBuffer, headers: { "content-type": "application/x-pki-message" } });
  expect(r.status).toBe(200);
  const rep = await c.reply(new Uint8Array(await r.arrayBuffer()));
  expect(rep.msg.pkiStatus).toBe("0");
  expect(rep.cert!.subject).toBe(`CN=${cn}`);
  expect(Buffer.from(rep.msg.signerDer).equals(Buffer.from(ra.rawData))).toBe(true);
}

describe("SCEP RA key size (ra_key)", () => {
  test("switching a profile between RSA-3072 and RSA-2048 gives distinct RA certificates and keys; switching back finds the first again", async () => {
    f = await start({});
    const dir = f.dir;
    const [first] = await getCaCert(f, "server");
    expect(bits(first!)).toBe(3072);
    await enroll(f, "server", first!, "before.example.com");

    // The profile asks for RSA-2048: an RA of its own under the same issuing CA.
    await f.stop({ keep: true });
    f = await start({ server: { ra_key: "RSA-2048" } }, dir);
    const [small, issuing] = await getCaCert(f, "server");
    expect(bits(small!)).toBe(2048);
    expect(small!.serialNumber).not.toBe(first!.serialNumber);
    expect(spki(small!)).not.toBe(spki(first!));
    expect(small!.issuer).toBe(issuing!.subject);
    expect(small!.subject).toContain("(RSA-2048)");
    expect(small!.getExtension(x509.KeyUsagesExtension)!.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    await enroll(f, "server", small!, "during.example.com");
    // A message enveloped to the other size's certificate does not open here: FAILURE, nothing issued.
    const c = await TestScepClient.create("wrong-ra.example.com");
    const body = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("wrong-ra.example.com", STATIC), first!);
    const refused = await c.reply(new Uint8Array(await (await f.svc.call("/scep/t1/server?operation=PKIOperation", { method: "POST", body: body.slice().buffer as ArrayBuffer })).arrayBuffer()));
    expect(refused.msg.pkiStatus).toBe("2");
    expect(refused.msg.failInfo).toBe("1");

    // Back to RSA-3072 through app.scep (the profile says nothing): the first certificate again.
    await f.stop({ keep: true });
    f = await start({ ra_key: "RSA-3072" }, dir);
    const [again] = await getCaCert(f, "server");
    expect(again!.serialNumber).toBe(first!.serialNumber);
    await enroll(f, "server", again!, "after.example.com");
  }, 120_000);

  test("app.scep.ra_key applies to profiles that do not say; a profile's own ra_key wins", async () => {
    const dir = f!.dir;
    await f!.stop({ keep: true });
    f = await start({ ra_key: "RSA-2048" }, dir);
    const [server] = await getCaCert(f, "server");
    const [pinned] = await getCaCert(f, "pinned");
    expect(bits(server!)).toBe(2048);
    expect(bits(pinned!)).toBe(3072);
    expect(server!.serialNumber).not.toBe(pinned!.serialNumber);
    await enroll(f, "pinned", pinned!, "pinned.example.com");
  }, 120_000);
});
