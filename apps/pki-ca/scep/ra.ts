/**
 * SCEP registration authority certificates: one RSA-3072 key per issuing CA (SCEP clients
 * encrypt to it with RSA key transport and check its signature on every CertRep), with
 * keyEncipherment and digitalSignature, issued by that CA. Created on first use, stored in
 * pki_cas as `scep-ra-<type>` (key barrier-encrypted), renewed as the OCSP responders are.
 */
import { createPrivateKey, type KeyObject } from "node:crypto";
import type { DataProtector } from "../../../src/service/context.ts";
import { signDer } from "../../../src/pki/signing.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { delegatedCertificate, loadOrCreate, renewalDue, renewOne, sealContext, type IssuingCa, type Signer } from "../hierarchy.ts";
import type { PkiStore } from "../store.ts";
import type { MessageSigner } from "./cms.ts";

export const raId = (ca: IssuingCa) => `scep-ra-${ca.keyType.toLowerCase()}`;

/** A loaded RA: it signs CertReps and opens the envelopes sent to it. */
export interface ScepRa extends MessageSigner {
  signer: Signer;
  /** The RSA key as a node KeyObject (RSA decryption has no WebCrypto form for PKCS#1 v1.5). */
  decryptionKey: KeyObject;
  issuing: IssuingCa;
}

function raCertificate(keys: CryptoKeyPair, subject: string | x509.Name, ca: IssuingCa, validityHours: number) {
  return delegatedCertificate(keys, subject, ca, validityHours, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, []);
}

async function toRa(store: PkiStore, protector: DataProtector, signer: Signer, issuing: IssuingCa): Promise<ScepRa> {
  const row = (await store.getCa(signer.id))!;
  const pkcs8 = await protector.decrypt(row.key_sealed, sealContext(signer.id));
  try {
    const decryptionKey = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
    return { signer, decryptionKey, issuing, cert: signer.cert, sign: (data) => signDer(signer.keyType, signer.key, data) };
  } finally {
    pkcs8.fill(0);
  }
}

/** The RA of an issuing CA, created on first use. */
export async function loadOrCreateRa(store: PkiStore, protector: DataProtector, issuing: IssuingCa, validityHours: number): Promise<ScepRa> {
  const signer = await loadOrCreate(store, protector, raId(issuing), "RSA-3072", (keys) => raCertificate(keys, `CN=cryptoutil pki-ca SCEP RA ${issuing.keyType}, O=cryptoutil`, issuing, validityHours), issuing.id);
  return toRa(store, protector, signer, issuing);
}

/** The RA renewed (fresh key, same subject) when less than `fraction` of its validity remains; else undefined. */
export async function renewRaIfDue(store: PkiStore, protector: DataProtector, ra: ScepRa, validityHours: number, fraction: number, now = Date.now()): Promise<ScepRa | undefined> {
  if (!renewalDue(ra.signer.cert, now, fraction)) return undefined;
  const next = await renewOne(store, protector, ra.signer, ra.issuing.cert.notAfter, (keys) => raCertificate(keys, ra.signer.cert.subjectName, ra.issuing, validityHours));
  return next ? toRa(store, protector, next, ra.issuing) : undefined;
}
