/**
 * CRL sharding by serial: with crl_shards set, each certificate's CRLDP names shard
 * `serial mod N`; each shard's full and delta CRL carries a critical issuingDistributionPoint
 * naming that URL, verifies with `openssl crl -verify`, and lists only its own revoked
 * serials; `openssl verify -crl_check` works with the shard a certificate points to and
 * refuses a CRL of another shard ("different CRL scope").
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { BASE_URL, haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { shardOf } from "../../apps/pki-ca/domain.ts";

const SHARDS = 4;
let f: CaFixture;
beforeAll(async () => {
  f = await startCa({ crl_shards: SHARDS, crl_full_on_revoke: true });
});
afterAll(async () => {
  await f?.stop();
});

test("serial to shard is serial mod N, and nothing when unsharded", () => {
  expect(shardOf({ crlShards: 4 }, "0f")).toBe(3);
  expect(shardOf({ crlShards: 4 }, "7fffffffffffffffffffffffffffff10")).toBe(0);
  expect(shardOf({ crlShards: 7 }, "64")).toBe(100 % 7);
  expect(shardOf({ crlShards: 1 }, "0f")).toBeUndefined();
});

test.skipIf(!haveOpenssl())("each certificate points at its shard; each shard CRL is partitioned, verifies, and lists only its serials [needs Debian openssl]", async () => {
  const tok = await f.token("acme", "pki:request pki:revoke");
  const certs: Array<{ serial: string; issuing_ca: string; certificate_pem: string; chain_pem: string; shard: number; file: string }> = [];
  for (let i = 0; i < 16; i++) {
    const { csr } = makeCsr(f.dir, `s${i}`, { subj: `/CN=s${i}.example.com`, san: `DNS:s${i}.example.com` });
    const r = await f.api("/certificates", tok, { body: { csr, profile: "server" } });
    expect(r.status).toBe(201);
    const c = ((await r.json()) as any).certificate;
    const shard = Number(BigInt(`0x${c.serial}`) % BigInt(SHARDS));
    const file = write(f.dir, `s${i}.pem`, c.certificate_pem);
    // The CRLDP is decided at issuance from the serial.
    const text = openssl(["x509", "-in", file, "-noout", "-ext", "crlDistributionPoints"]).out;
    expect(text).toContain(`URI:${BASE_URL}/pki/crl/${c.issuing_ca}-s${shard}.crl`);
    certs.push({ ...c, shard, file });
  }
  const used = new Set(certs.map((c) => c.shard));
  expect(used.size).toBeGreaterThan(1);
  const caId = certs[0]!.issuing_ca;
  const [issuingPem, rootPem] = certs[0]!.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/) as [string, string];
  const root = write(f.dir, "root-s.pem", rootPem);
  const issuing = write(f.dir, "issuing-s.pem", issuingPem);
  const bundle = write(f.dir, "bundle-s.pem", rootPem + issuingPem);

  // Revoke one certificate in each of two different shards.
  const victims = [certs[0]!, certs.find((c) => c.shard !== certs[0]!.shard)!];
  for (const v of victims) expect((await f.api(`/certificates/${v.serial}/revoke`, tok, { body: { reason: "keyCompromise" } })).status).toBe(200);

  const fetchCrl = async (name: string) => {
    const r = await f.svc.call(`/pki/crl/${name}.crl`);
    expect(r.status).toBe(200);
    const der = write(f.dir, `${name}-${crypto.randomUUID()}.crl`, new Uint8Array(await r.arrayBuffer()));
    return { der, pem: write(f.dir, `${name}-${crypto.randomUUID()}.pem`, openssl(["crl", "-inform", "DER", "-in", der, "-outform", "PEM"]).out) };
  };
  const listed = (text: string) => [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase()).sort();

  for (let k = 0; k < SHARDS; k++) {
    const url = `${BASE_URL}/pki/crl/${caId}-s${k}.crl`;
    const expected = victims.filter((v) => v.shard === k).map((v) => v.serial).sort();
    for (const name of [`${caId}-s${k}`, `${caId}-s${k}-delta`]) {
      const crl = await fetchCrl(name);
      expect(openssl(["crl", "-inform", "DER", "-in", crl.der, "-CAfile", bundle, "-verify", "-noout"]).out).toContain("verify OK");
      const text = openssl(["crl", "-inform", "DER", "-in", crl.der, "-noout", "-text"]).out;
      expect(text).toMatch(/X509v3 Issuing Distribution Point: critical\s+Full Name:\s+URI:(\S+)/);
      expect(text.match(/X509v3 Issuing Distribution Point: critical\s+Full Name:\s+URI:(\S+)/)![1]).toBe(url);
      if (!name.endsWith("-delta")) expect(text).toContain(`URI:${BASE_URL}/pki/crl/${caId}-s${k}-delta.crl`);
      else expect(text).toContain("Delta CRL Indicator");
      expect(listed(text)).toEqual(expected);
    }
  }
  // The complete CRL stays available and (through its delta) knows both revocations.
  const completeDelta = openssl(["crl", "-inform", "DER", "-in", (await fetchCrl(`${caId}-delta`)).der, "-noout", "-text"]).out;
  expect(listed(completeDelta)).toEqual(victims.map((v) => v.serial).sort());
  expect(completeDelta).not.toContain("Issuing Distribution Point");

  // openssl verify -crl_check with the shard a certificate points to.
  const revoked = victims[0]!;
  const good = certs.find((c) => !victims.includes(c))!;
  const check = async (c: (typeof certs)[number], shard: number) =>
    openssl(["verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", (await fetchCrl(`${caId}-s${shard}`)).pem, c.file]);
  const r1 = await check(revoked, revoked.shard);
  expect(r1.code).not.toBe(0);
  expect(r1.out).toContain("certificate revoked");
  const r2 = await check(good, good.shard);
  expect(r2.code).toBe(0);
  // A CRL of another shard does not cover the certificate: openssl sees its scope differ.
  const r3 = await check(good, (good.shard + 1) % SHARDS);
  expect(r3.code).not.toBe(0);
  expect(r3.out).toContain("different CRL scope");
});

test("shard names outside the CA's shards, or on an unsharded name form, are 404", async () => {
  const ca = await pkiCaOf(f.svc.ctx);
  const id = [...ca.hierarchy.issuing.values()][0]!.id;
  for (const name of [`${id}-s${SHARDS}`, `${id}-s99-delta`, `${id}-s01`, `${id}-sx`, `nope-s1`]) {
    expect((await f.svc.call(`/pki/crl/${name}.crl`)).status).toBe(404);
  }
  expect((await f.svc.call(`/pki/crl/${id}-s${SHARDS - 1}.crl`)).status).toBe(200);
});

test("the shard count is fixed when the issuing CA is created: a restart with another count keeps it", async () => {
  const dir = f.dir;
  await f.stop({ keep: true });
  f = await startCa({ crl_shards: 2, issuing_cas: ["P-256", "P-384", "Ed25519"], profiles: {} }, dir);
  const ca = await pkiCaOf(f.svc.ctx);
  expect(ca.hierarchy.issuing.get("P-256")!.crlShards).toBe(SHARDS);
  // A CA created now takes the configured count.
  expect(ca.hierarchy.issuing.get("Ed25519")!.crlShards).toBe(2);
  expect((await f.svc.call(`/pki/crl/${ca.hierarchy.issuing.get("P-256")!.id}-s${SHARDS - 1}.crl`)).status).toBe(200);
});
