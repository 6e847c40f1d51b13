/**
 * CRLs (RFC 5280 §5) signed by an issuing CA: v2, with the CRL number and authority key
 * identifier extensions and a reason code on each entry. A full CRL may name where its delta
 * CRLs are (freshestCRL, §5.2.6); a delta CRL carries the number of its base (deltaCRLIndicator,
 * critical, §5.2.4). Full and delta CRLs of one scope share one growing number sequence.
 * A partitioned CRL (one shard of an issuer's certificates) names its scope in a critical
 * issuingDistributionPoint (§5.2.5), the same URL as the CRLDP of the certificates it covers;
 * its delta CRLs carry the same extension, as a delta must have the scope of its base.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { x509Time } from "./time.ts";
import {
  BaseCRLNumber,
  CRLNumber,
  DistributionPoint,
  DistributionPointName,
  FreshestCRL,
  GeneralName,
  id_ce_cRLNumber,
  id_ce_deltaCRLIndicator,
  id_ce_freshestCRL,
  id_ce_issuingDistributionPoint,
  IssuingDistributionPoint,
} from "@peculiar/asn1-x509";
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

export interface CrlOptions {
  /** Must grow with every CRL (full or delta) of this issuer. */
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Makes this a delta CRL over the full CRL with this number. */
  deltaOf?: number;
  /** On a full CRL: the URL of its delta CRLs. */
  freshestUrl?: string;
  /** Makes this a partitioned CRL whose scope is the certificates naming this CRLDP URL. */
  scopeUrl?: string;
}

/** Builds and signs a full or (with `deltaOf`) delta CRL. */
export async function signCrl(issuer: CrlIssuer, entries: RevokedEntry[], opts: CrlOptions): Promise<x509.X509Crl> {
  const extra: x509.Extension[] = [];
  if (opts.deltaOf !== undefined) {
    extra.push(new x509.Extension(id_ce_deltaCRLIndicator, true, AsnConvert.serialize(new BaseCRLNumber(opts.deltaOf))));
  }
  if (opts.scopeUrl) {
    const idp = new IssuingDistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: opts.scopeUrl })] }) });
    extra.push(new x509.Extension(id_ce_issuingDistributionPoint, true, AsnConvert.serialize(idp)));
  }
  if (opts.freshestUrl) {
    const dp = new DistributionPoint({ distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: opts.freshestUrl })] }) });
    extra.push(new x509.Extension(id_ce_freshestCRL, false, AsnConvert.serialize(new FreshestCRL([dp]))));
  }
  return x509.X509CrlGenerator.create({
    issuer: issuer.cert.subjectName,
    thisUpdate: x509Time(opts.thisUpdate),
    nextUpdate: x509Time(opts.nextUpdate),
    signingKey: issuer.key,
    signingAlgorithm: signingAlgorithm(issuer.keyType),
    extensions: [
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey, false),
      new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(opts.number))),
      ...extra,
    ],
    entries: entries.map((e) => ({
      serialNumber: e.serialHex,
      revocationDate: x509Time(e.revokedAt),
      ...(e.reason ? { reason: e.reason as x509.X509CrlReason } : {}),
    })),
  });
}
