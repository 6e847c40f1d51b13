/**
 * SCEP registration authority certificates, issued by each issuing CA, created on first use,
 * stored in pki_cas (key barrier-encrypted) and renewed as the OCSP responders are. SCEP clients
 * encrypt to the RA with RSA key transport and check the RA's signature on every CertRep.
 *
 * Two layouts (`app.scep.ra_signing_key`, or a SCEP profile's own), each with an RSA key of
 * `ra_key`'s size (RSA-3072 by default, or RSA-2048):
 * - `RSA-3072` (the RSA key signs): one RSA key and certificate (keyEncipherment and
 *   digitalSignature) opens the envelopes and signs the CertReps; stored as `scep-ra-<type>`
 *   (RSA-2048: `scep-ra-rsa2048-<type>`).
 * - `P-256`: RFC 8894's RA with separate certificates (§2.2, clients choose by keyUsage): an
 *   RSA encryption certificate with keyEncipherment alone (`scep-ra-enc-<type>`, RSA-2048:
 *   `scep-ra-enc-rsa2048-<type>`) and a P-256 signing certificate with digitalSignature alone
 *   (`scep-ra-sign-<type>`, whatever the RSA size). The envelope's key transport needs RSA; only
 *   the signature on each answer moves from an RSA private-key operation (~2 ms for RSA-3072)
 *   to a P-256 one (~0.02 ms).
 * Each RSA size has its own rows, so switching `ra_key` never reuses a key of the other size.
 */
import { createPrivateKey } from "node:crypto";
import type * as v from "valibot";
import type { DataProtector } from "../../../src/service/context.ts";
import { AppError } from "../../../src/service/errors.ts";
import { signatureAlgorithmId, signDer, type SignerKeyType } from "../../../src/pki/signing.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { delegatedCertificate, loadOrCreate, renewalDue, renewOne, sealContext, type IssuingCa, type Signer } from "../hierarchy.ts";
import type { PkiStore } from "../store.ts";
import type { MessageSigner } from "./cms.ts";
import type { RaKeySchema, RaSigningKeySchema } from "./config.ts";
import { RsaPool, type RawRsaDecrypt } from "./rsa-pool.ts";

/** Which key signs the RA's messages: the RSA encryption key itself, or a P-256 key of its own. */
export type RaSigningKey = v.InferOutput<typeof RaSigningKeySchema>;
/** The size of the RA's RSA (encryption) key. */
export type RaKey = v.InferOutput<typeof RaKeySchema>;

/** RSA-3072 keeps the ids it always had; another size names itself in its ids. */
const sized = (rsaKey: RaKey) => (rsaKey === "RSA-3072" ? "" : `${rsaKey.replace("-", "").toLowerCase()}-`);
export const raId = (ca: IssuingCa, rsaKey: RaKey = "RSA-3072") => `scep-ra-${sized(rsaKey)}${ca.keyType.toLowerCase()}`;
const encId = (ca: IssuingCa, rsaKey: RaKey) => `scep-ra-enc-${sized(rsaKey)}${ca.keyType.toLowerCase()}`;
const signId = (ca: IssuingCa) => `scep-ra-sign-${ca.keyType.toLowerCase()}`;

/**
 * A loaded RA: `cert` and `sign` sign CertReps (and EST's and CMC's signed answers);
 * `encryption` and `decrypt` open the envelopes sent to it. One signer when the RSA key signs,
 * two in the P-256 layout.
 */
export interface ScepRa extends MessageSigner {
  signer: Signer<SignerKeyType>;
  /** The RSA certificate clients encrypt to (the signer's own when the RSA key signs). */
  encryption: Signer<RaKey>;
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

async function toRa(store: PkiStore, protector: DataProtector, encryption: Signer<RaKey>, signer: Signer<SignerKeyType>, issuing: IssuingCa): Promise<ScepRa> {
  const row = (await store.getCa(encryption.id))!;
  const pkcs8 = await protector.decrypt(row.key_sealed, sealContext(encryption.id));
  try {
    const rsa = RsaPool.create(pkcs8, createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }));
    const certs = encryption === signer ? [encryption.cert] : [encryption.cert, signer.cert];
    // One RSA key for both: its signatures run on the RA's threads too, off the event loop.
    const sign: ScepRa["sign"] =
      encryption === signer ? async (data) => ({ algorithm: signatureAlgorithmId(encryption.keyType), signature: (await rsa.sign(new Uint8Array(data))).slice().buffer as ArrayBuffer }) : (data) => signDer(signer.keyType, signer.key, data);
    return { signer, encryption, decrypt: rsa.decrypt, close: rsa.close, issuing, certs, cert: signer.cert, sign };
  } finally {
    pkcs8.fill(0);
  }
}

/** The RA of an issuing CA in the layout and RSA key size asked for, created on first use. */
export async function loadOrCreateRa(store: PkiStore, protector: DataProtector, issuing: IssuingCa, validityHours: number, signingKey: RaSigningKey = "RSA-3072", rsaKey: RaKey = "RSA-3072"): Promise<ScepRa> {
  // An RSA certificate of another size than RSA-3072 says so (the P-256 signer is the same for both).
  const subject = (what: string, keyType: SignerKeyType) => `CN=cryptoutil pki-ca SCEP RA ${what}${issuing.keyType}${keyType === "RSA-2048" ? " (RSA-2048)" : ""}, O=cryptoutil`;
  const make = <K extends SignerKeyType>(id: string, keyType: K, what: string) => loadOrCreate(store, protector, id, keyType, (keys) => raCertificate(keys, subject(what, keyType), issuing, validityHours, usagesOf(id)), issuing.id);
  const rsa = async (id: string, what: string) => {
    const s = await make(id, rsaKey, what);
    // The ids keep the sizes apart; a row of another size under this id was not written by this code.
    if (s.keyType !== rsaKey) throw new AppError("internal", `the stored SCEP RA key ${id} is ${s.keyType}, not ${rsaKey}`, { status: 500 });
    return s;
  };
  if (signingKey === "RSA-3072") {
    const ra = await rsa(raId(issuing, rsaKey), "");
    return toRa(store, protector, ra, ra, issuing);
  }
  const [encryption, signer] = await Promise.all([rsa(encId(issuing, rsaKey), "encryption "), make(signId(issuing), "P-256", "signing ")]);
  return toRa(store, protector, encryption, signer, issuing);
}

/** The RA with each of its certificates renewed (fresh key, same subject) when less than `fraction` of its validity remains; else undefined. */
export async function renewRaIfDue(store: PkiStore, protector: DataProtector, ra: ScepRa, validityHours: number, fraction: number, now = Date.now()): Promise<ScepRa | undefined> {
  const renew = async <K extends SignerKeyType>(s: Signer<K>) => (renewalDue(s.cert, now, fraction) ? renewOne(store, protector, s, ra.issuing.cert.notAfter, (keys) => raCertificate(keys, s.cert.subjectName, ra.issuing, validityHours, usagesOf(s.id))) : undefined);
  const encryption = await renew(ra.encryption);
  const signer = ra.signer === ra.encryption ? encryption : await renew(ra.signer);
  if (!encryption && !signer) return undefined;
  const e = encryption ?? ra.encryption;
  return toRa(store, protector, e, ra.signer === ra.encryption ? e : (signer ?? ra.signer), ra.issuing);
}
