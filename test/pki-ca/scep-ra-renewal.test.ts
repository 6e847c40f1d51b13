/**
 * The SCEP RA's certificates renew before they expire (less than signer_renewal_fraction of
 * their validity left; here a one-hour validity and a clock moved ahead), in both layouts and
 * both RSA key sizes: the single RSA certificate, and the P-256 signing certificate next to the
 * RSA encryption one. Each renewed certificate has a new key of the same size, the same subject
 * and key usage; the
 * renewed RA opens envelopes sent to its new encryption certificate (on its threads) and signs
 * CertReps that verify with its new signing certificate; a fresh RA renews nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { startCa, PROFILES, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { loadOrCreateRa, renewRaIfDue } from "../../apps/pki-ca/scep/ra.ts";
import { openEnvelope, parsePkiMessage, sealEnvelope, signPkiMessage } from "../../apps/pki-ca/scep/cms.ts";
import * as x509 from "../../src/pki/x509.ts";

let f: CaFixture;
beforeAll(async () => {
  f = await startCa({ signer_renewal_fraction: 0.25, profiles: PROFILES, scep: { ra_validity_hours: 1, tenants: { t1: { profiles: { server: {} } } } } });
});
afterAll(async () => {
  await f?.stop();
});

const usages = (c: x509.X509Certificate) => c.getExtension(x509.KeyUsagesExtension)!.usages;
const spkiHex = (c: x509.X509Certificate) => Buffer.from(c.publicKey.rawData).toString("hex");
/** An RSA key's modulus length, or the curve of an EC one. */
const bits = (c: x509.X509Certificate) => (c.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength ?? (c.publicKey.algorithm as EcKeyAlgorithm).namedCurve;

describe("SCEP RA renewal", () => {
  for (const [layout, size] of [["RSA-3072", "RSA-3072"], ["P-256", "RSA-3072"], ["RSA-3072", "RSA-2048"], ["P-256", "RSA-2048"]] as const) {
    test(`${layout === "P-256" ? "P-256" : "RSA"} signing, ${size} RA key: renewed near expiry with new keys, same subjects, key usages and sizes; the renewed RA decrypts and signs`, async () => {
      const ca = await pkiCaOf(f.svc.ctx);
      const issuing = ca.hierarchy.issuing.get(ca.profile("server").issuing_ca)!;
      const ra = await loadOrCreateRa(ca.store, f.svc.ctx.protector, issuing, 1, layout, size);
      try {
        expect(ra.certs.length).toBe(layout === "P-256" ? 2 : 1);
        expect(bits(ra.encryption.cert)).toBe(size === "RSA-2048" ? 2048 : 3072);
        expect(await renewRaIfDue(ca.store, f.svc.ctx.protector, ra, 1, 0.25)).toBeUndefined();
        const later = Date.now() + 50 * 60_000;
        const renewed = (await renewRaIfDue(ca.store, f.svc.ctx.protector, ra, 1, 0.25, later))!;
        try {
          expect(renewed).toBeDefined();
          expect(renewed.certs.length).toBe(ra.certs.length);
          renewed.certs.forEach((c, i) => {
            const old = ra.certs[i]!;
            expect(c.subject).toBe(old.subject);
            expect(usages(c)).toBe(usages(old));
            expect(spkiHex(c)).not.toBe(spkiHex(old));
            expect(bits(c)).toBe(bits(old));
            expect(c.issuer).toBe(issuing.cert.subject);
          });
          const secret = randomBytes(40);
          expect(Buffer.from(await openEnvelope(sealEnvelope(secret, renewed.encryption.cert), renewed.encryption.cert, renewed.decrypt)).equals(secret)).toBe(true);
          const rep = await parsePkiMessage(await signPkiMessage(renewed, { messageType: "3", transactionId: "renewal", senderNonce: randomBytes(16), pkiStatus: "0" }, new Uint8Array(0)));
          expect(Buffer.from(rep.signerDer).equals(Buffer.from(renewed.cert.rawData))).toBe(true);
          expect(renewed.cert.publicKey.algorithm.name).toBe(layout === "P-256" ? "ECDSA" : "RSASSA-PKCS1-v1_5");
        } finally {
          renewed.close();
        }
      } finally {
        ra.close();
      }
    }, 60_000);
  }
});
