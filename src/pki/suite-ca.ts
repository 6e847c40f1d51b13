/**
 * The private suite CA: a P-256 root and one intermediate that issues the TLS
 * leaf of every service of the suite.
 *
 * Guarantees: root is self-signed with CA:true pathLen 1 and keyCertSign+cRLSign
 * (both critical), 10 years; intermediate CA:true pathLen 0, 5 years, signed by
 * the root; both carry subject (and the intermediate authority) key identifiers;
 * serials are 16 random positive bytes (see serial.ts). Private keys are generated
 * extractable only so that they can be sealed for storage (see suite-ca-store.ts).
 */
import { ECDSA_SHA256, generateP256 } from "./keys.ts";
import { x509Time } from "./time.ts";
import { randomSerialHex } from "./serial.ts";
import * as x509 from "./x509.ts";

/** One CA level: its certificate and the private key that signs with it. */
export interface CaLevel {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

/** The two levels of the suite CA. */
export interface SuiteCa {
  root: CaLevel;
  intermediate: CaLevel;
}

const DAY_MS = 86_400_000;
/** Backdating absorbs small clock differences between the services of a suite. */
export const BACKDATE_MS = 60_000;
const ROOT_YEARS = 10;
const INTERMEDIATE_YEARS = 5;

function addYears(d: Date, years: number): Date {
  const out = new Date(d.getTime());
  out.setUTCFullYear(out.getUTCFullYear() + years);
  return out;
}

/**
 * Creates a new suite CA (root -> intermediate), in memory only.
 *
 * @example
 *   const ca = await createSuiteCa();
 *   const leaf = await issueLeaf(ca, { serviceName: "sm-kms", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
 */
export async function createSuiteCa(opts: { now?: Date; extractable?: boolean } = {}): Promise<SuiteCa> {
  const now = opts.now ?? new Date();
  const extractable = opts.extractable ?? true;
  const notBefore = x509Time(now.getTime() - BACKDATE_MS);
  // A short random tag in the names keeps two suites on one machine apart in trust stores.
  const tag = randomSerialHex().slice(0, 8);
  const caUsage = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;

  const rootKeys = await generateP256(extractable);
  const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: `CN=cryptoutil Suite Root CA ${tag}, O=cryptoutil`,
    notBefore,
    notAfter: x509Time(addYears(now, ROOT_YEARS)),
    keys: rootKeys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(caUsage, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });

  const intKeys = await generateP256(extractable);
  const intCert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: `CN=cryptoutil Suite Intermediate CA ${tag}, O=cryptoutil`,
    issuer: rootCert.subjectName,
    notBefore,
    notAfter: x509Time(addYears(now, INTERMEDIATE_YEARS)),
    publicKey: intKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(caUsage, true),
      await x509.SubjectKeyIdentifierExtension.create(intKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });

  return {
    root: { cert: rootCert, key: rootKeys.privateKey },
    intermediate: { cert: intCert, key: intKeys.privateKey },
  };
}

export { DAY_MS };
