/**
 * SCEP registration authority certificates, issued by each issuing CA, created on first use,
 * stored in pki_cas (key barrier-encrypted) and renewed as the OCSP responders are. SCEP clients
 * encrypt to the RA with RSA key transport and check the RA's signature on every CertRep.
 *
 * Two layouts (`app.scep.ra_signing_key`, or a SCEP profile's own):
 * - `RSA-3072`: one RSA-3072 key and certificate (keyEncipherment and digitalSignature) opens
 *   the envelopes and signs the CertReps; stored as `scep-ra-<type>`.
 * - `P-256`: RFC 8894's RA with separate certificates (§2.2, clients choose by keyUsage): an
 *   RSA-3072 encryption certificate with keyEncipherment alone (`scep-ra-enc-<type>`) and a
 *   P-256 signing certificate with digitalSignature alone (`scep-ra-sign-<type>`). The RSA key
 *   stays the same size (the envelope's key transport needs RSA); only the signature on each
 *   answer moves from an RSA-3072 private-key operation (~2 ms) to a P-256 one (~0.02 ms).
 */
import { createPrivateKey } from "node:crypto";
import type * as v from "valibot";
import type { DataProtector } from "../../../src/service/context.ts";
import { signatureAlgorithmId, signDer } from "../../../src/pki/signing.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { delegatedCertificate, loadOrCreate, renewalDue, renewOne, sealContext, type IssuingCa, type Signer } from "../hierarchy.ts";
import type { PkiStore } from "../store.ts";
import type { MessageSigner } from "./cms.ts";
import type { RaSigningKeySchema } from "./config.ts";
import { RsaPool, type RawRsaDecrypt } from "./rsa-pool.ts";

/** Which key signs the RA's messages: the RSA encryption key itself, or a P-256 key of its own. */
export type RaSigningKey = v.InferOutput<typeof RaSigningKeySchema>;

export const raId = (ca: IssuingCa) => `scep-ra-${ca.keyType.toLowerCase()}`;
const encId = (ca: IssuingCa) => `scep-ra-enc-${ca.keyType.toLowerCase()}`;
const signId = (ca: IssuingCa) => `scep-ra-sign-${ca.keyType.toLowerCase()}`;

/**
 * A loaded RA: `cert` and `sign` sign CertReps (and EST's and CMC's signed answers);
 * `encryption` and `decrypt` open the envelopes sent to it. One signer in the RSA-3072
 * layout, two in the P-256 one.
 */
export interface ScepRa extends MessageSigner {
  signer: Signer;
  /** The RSA certificate clients encrypt to (the signer's own in the RSA-3072 layout). */
  encryption: Signer;
  /** Raw RSA decryption with the encryption key (PKCS#1 v1.5 has no WebCrypto form), on worker threads where there are cores for them. */
  decrypt: RawRsaDecrypt;
  /** Ends the decryption threads (the RA renewed, the CA sealed or stopped). */
  close(): void;
  issuing: IssuingCa;
  /** What GetCACert lists before the chain: the encryption certificate first, then a separate signer's. */
  certs: x509.X509Certificate[];
}

function raCertificate(keys: CryptoKeyPair, subject: string | x509.Name, ca: IssuingCa, validityHours: number, usages: number) {
  return delegatedCertificate(keys, subject, ca, validityHours, usages, []);
}

const BOTH = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
const usagesOf = (id: string) => (id.startsWith("scep-ra-enc-") ? x509.KeyUsageFlags.keyEncipherment : id.startsWith("scep-ra-sign-") ? x509.KeyUsageFlags.digitalSignature : BOTH);

async function toRa(store: PkiStore, protector: DataProtector, encryption: Signer, signer: Signer, issuing: IssuingCa): Promise<ScepRa> {
  const row = (await store.getCa(encryption.id))!;
  const pkcs8 = await protector.decrypt(row.key_sealed, sealContext(encryption.id));
  try {
    const rsa = RsaPool.create(pkcs8, createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }));
    const certs = encryption === signer ? [encryption.cert] : [encryption.cert, signer.cert];
    // One RSA key for both: its signatures run on the RA's threads too, off the event loop.
    const sign: ScepRa["sign"] =
      encryption === signer ? async (data) => ({ algorithm: signatureAlgorithmId("RSA-3072"), signature: (await rsa.sign(new Uint8Array(data))).slice().buffer as ArrayBuffer }) : (data) => signDer(signer.keyType, signer.key, data);
    return { signer, encryption, decrypt: rsa.decrypt, close: rsa.close, issuing, certs, cert: signer.cert, sign };
  } finally {
    pkcs8.fill(0);
  }
}

/** The RA of an issuing CA in the layout asked for, created on first use. */
export async function loadOrCreateRa(store: PkiStore, protector: DataProtector, issuing: IssuingCa, validityHours: number, signingKey: RaSigningKey = "RSA-3072"): Promise<ScepRa> {
  const subject = (what: string) => `CN=cryptoutil pki-ca SCEP RA ${what}${issuing.keyType}, O=cryptoutil`;
  const make = (id: string, keyType: "RSA-3072" | "P-256", what: string) => loadOrCreate(store, protector, id, keyType, (keys) => raCertificate(keys, subject(what), issuing, validityHours, usagesOf(id)), issuing.id);
  if (signingKey === "RSA-3072") {
    const ra = await make(raId(issuing), "RSA-3072", "");
    return toRa(store, protector, ra, ra, issuing);
  }
  const [encryption, signer] = await Promise.all([make(encId(issuing), "RSA-3072", "encryption "), make(signId(issuing), "P-256", "signing ")]);
  return toRa(store, protector, encryption, signer, issuing);
}

/** The RA with each of its certificates renewed (fresh key, same subject) when less than `fraction` of its validity remains; else undefined. */
export async function renewRaIfDue(store: PkiStore, protector: DataProtector, ra: ScepRa, validityHours: number, fraction: number, now = Date.now()): Promise<ScepRa | undefined> {
  const renew = async (s: Signer) => (renewalDue(s.cert, now, fraction) ? renewOne(store, protector, s, ra.issuing.cert.notAfter, (keys) => raCertificate(keys, s.cert.subjectName, ra.issuing, validityHours, usagesOf(s.id))) : undefined);
  const encryption = await renew(ra.encryption);
  const signer = ra.signer === ra.encryption ? encryption : await renew(ra.signer);
  if (!encryption && !signer) return undefined;
  const e = encryption ?? ra.encryption;
  return toRa(store, protector, e, ra.signer === ra.encryption ? e : (signer ?? ra.signer), ra.issuing);
}
