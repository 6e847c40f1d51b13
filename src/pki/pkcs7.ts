/**
 * Certificate bundles as a degenerate ("certs-only") CMS SignedData (RFC 5652 §5, RFC 2315):
 * no content, no signers, just certificates, the `.p7c` format relying parties download.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { CertificateChoices, CertificateSet, ContentInfo, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, id_data, id_signedData, SignedData, SignerInfos } from "@peculiar/asn1-cms";
import type * as x509 from "./x509.ts";
import { derTlv } from "./leaf-signer.ts";
import { oidDer } from "./der.ts";

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

/**
 * DER of a degenerate SignedData holding only `crls` (RFC 5652 §5.1, `crls [1] IMPLICIT`), the
 * form SCEP's GetCRL answers with (RFC 8894 §3.3.2.2). Written directly: the CMS schema package
 * has no CertificateList choice for RevocationInfoChoice.
 */
export function crlsOnlyPkcs7(crls: Uint8Array[]): Uint8Array {
  const signed = derTlv(0x30, derTlv(0x02, new Uint8Array([1])), derTlv(0x31), derTlv(0x30, oidDer(id_data)), derTlv(0xa1, ...crls), derTlv(0x31));
  return derTlv(0x30, oidDer(id_signedData), derTlv(0xa0, signed));
}
