/**
 * Full CRLs (RFC 5280 §5) signed by an issuing CA: v2, with the CRL number and
 * authority key identifier extensions and a reason code on each entry.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { CRLNumber, id_ce_cRLNumber } from "@peculiar/asn1-x509";
import { signingAlgorithm, type CaKeyType } from "./signing.ts";
import * as x509 from "./x509.ts";

export interface RevokedEntry {
  serialHex: string;
  revokedAt: Date;
  /** RFC 5280 CRLReason; omitted from the entry when unspecified (0), as §5.3.1 recommends. */
  reason: number;
}

export interface CrlIssuer {
  keyType: CaKeyType;
  key: CryptoKey;
  cert: x509.X509Certificate;
}

/** Builds and signs a full CRL. `number` must grow with every CRL of this issuer. */
export async function signCrl(issuer: CrlIssuer, entries: RevokedEntry[], opts: { number: number; thisUpdate: Date; nextUpdate: Date }): Promise<x509.X509Crl> {
  return x509.X509CrlGenerator.create({
    issuer: issuer.cert.subjectName,
    thisUpdate: opts.thisUpdate,
    nextUpdate: opts.nextUpdate,
    signingKey: issuer.key,
    signingAlgorithm: signingAlgorithm(issuer.keyType),
    extensions: [
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey, false),
      new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(opts.number))),
    ],
    entries: entries.map((e) => ({
      serialNumber: e.serialHex,
      revocationDate: e.revokedAt,
      ...(e.reason ? { reason: e.reason as x509.X509CrlReason } : {}),
    })),
  });
}
