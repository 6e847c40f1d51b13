/**
 * Certificate bundles as a degenerate ("certs-only") CMS SignedData (RFC 5652 §5, RFC 2315):
 * no content, no signers, just certificates, the `.p7c` format relying parties download.
 * Written directly from DER pieces, the certificates copied verbatim: EST and SCEP answer every
 * enrollment with one, and the generic ASN.1 serializer cost milliseconds per bundle.
 */
import { id_data, id_signedData } from "@peculiar/asn1-cms";
import type * as x509 from "./x509.ts";
import { derTlv } from "./leaf-signer.ts";
import { oidDer } from "./der.ts";

/** DER of a degenerate SignedData with `certificates [0]` and/or `crls [1]` (each a list of DER encodings). */
function degenerate(certs: Uint8Array[], crls: Uint8Array[]): Uint8Array {
  const signed = derTlv(0x30, derTlv(0x02, new Uint8Array([1])), derTlv(0x31), derTlv(0x30, oidDer(id_data)), ...(certs.length ? [derTlv(0xa0, ...certs)] : []), ...(crls.length ? [derTlv(0xa1, ...crls)] : []), derTlv(0x31));
  return derTlv(0x30, oidDer(id_signedData), derTlv(0xa0, signed));
}

/** DER of a certs-only SignedData holding `certs` (parsed, or their DER) in the given order. */
export function certsOnlyPkcs7(certs: Array<x509.X509Certificate | Uint8Array>): Uint8Array {
  return degenerate(
    certs.map((c) => (c instanceof Uint8Array ? c : new Uint8Array(c.rawData))),
    [],
  );
}

/**
 * DER of a degenerate SignedData holding only `crls` (RFC 5652 §5.1, `crls [1] IMPLICIT`), the
 * form SCEP's GetCRL answers with (RFC 8894 §3.3.2.2).
 */
export function crlsOnlyPkcs7(crls: Uint8Array[]): Uint8Array {
  return degenerate([], crls);
}
