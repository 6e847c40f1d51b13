/**
 * X.509 helpers shared by the services' automatic TLS certificates and pki-ca.
 *
 * Auto mode: `loadOrCreateTlsMaterial` (suite CA shared on the machine + per-service leaf).
 * Static mode: `loadStaticTlsMaterial` (operator-provided PEM).
 */
export * as x509 from "./x509.ts";
export { randomSerialHex } from "./serial.ts";
export { generateP256, toPem, importKeyForCertificate, P256, ECDSA_SHA256 } from "./keys.ts";
export { createSuiteCa, type SuiteCa, type CaLevel } from "./suite-ca.ts";
export { issueLeaf, sansOf, checkServiceName, MAX_LEAF_VALIDITY_DAYS, type LeafRequest, type IssuedLeaf, type LeafUsage } from "./leaf.ts";
export { serverSans, normalizeSans, sameSans, canonicalIp, type SubjectAltNames } from "./sans.ts";
export { AesGcmSealer, suiteCaSealerFromSecrets, suiteCaSealerFromFiles, type Sealer } from "./sealer.ts";
export { DirectoryStore, type KeyValueStore, type CreateOnceStore } from "./store.ts";
export { loadOrCreateSuiteCa, trustBundlePem, SUITE_CA_RECORD, type SuiteCaLocation } from "./suite-ca-store.ts";
export {
  loadOrCreateTlsMaterial,
  writeTrustBundle,
  leafRecordName,
  renewalDue,
  RENEW_BEFORE_DAYS,
  type TlsMaterial,
  type LeafOutcome,
  type LoadOrCreateTlsOptions,
} from "./tls-material.ts";
export { RenewingTlsMaterial, type RenewingTlsOptions } from "./renewal.ts";
export { loadStaticTlsMaterial, type StaticTlsSource } from "./static-tls.ts";
export { CA_KEY_TYPES, SUBJECT_KEY_TYPES, generateCaKey, importCaKey, keyGenParams, signingAlgorithm, signDer, subjectKeyType, type CaKeyType, type SubjectKeyType } from "./signing.ts";
export { decodeCsr, parseCsr, verifyPossession, MAX_CSR_BYTES, type ParsedCsr } from "./csr.ts";
export { signCrl, type RevokedEntry, type CrlIssuer } from "./crl.ts";
export { parseOcspRequest, signOcspResponse, ocspErrorResponse, issuerHashes, serialHexOf, OCSPResponseStatus, MAX_OCSP_REQUEST_BYTES, type OcspAnswer, type OcspSigner, type OcspQuestion, type ParsedOcspRequest } from "./ocsp.ts";
export { parseTimeStampReq, stamp, timeStampRejection, TSP_FAILURE, MAX_TSP_REQUEST_BYTES, type TsaSigner, type TspOutcome, type TspFailure } from "./tsp.ts";
export { certsOnlyPkcs7 } from "./pkcs7.ts";
export { signLeaf, csrParts, extensionDer, derTlv, type LeafIssuer, type LeafParams } from "./leaf-signer.ts";
