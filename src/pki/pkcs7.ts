/**
 * Certificate bundles as a degenerate ("certs-only") CMS SignedData (RFC 5652 §5, RFC 2315):
 * no content, no signers, just certificates, the `.p7c` format relying parties download.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { CertificateChoices, CertificateSet, ContentInfo, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, id_data, id_signedData, SignedData, SignerInfos } from "@peculiar/asn1-cms";
import type * as x509 from "./x509.ts";

/** DER of a certs-only SignedData holding `certs` in the given order. */
export function certsOnlyPkcs7(certs: x509.X509Certificate[]): Uint8Array {
  const signed = new SignedData({
    version: 1,
    digestAlgorithms: new DigestAlgorithmIdentifiers([]),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }),
    certificates: new CertificateSet(certs.map((c) => new CertificateChoices({ certificate: AsnConvert.parse(c.rawData, Certificate) }))),
    signerInfos: new SignerInfos([]),
  });
  return new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signed) })));
}
