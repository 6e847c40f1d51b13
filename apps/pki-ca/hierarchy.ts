/**
 * The CA hierarchy of one pki-ca instance: a P-256 instance root, one online
 * issuing CA per configured key type, a delegated OCSP responder per issuing CA,
 * and a time-stamping authority.
 * Created on first start, then loaded; private keys are stored only as barrier
 * ciphertext bound to the CA's record id.
 *
 * Guarantees: root CA:true pathLen 1, issuing CAs CA:true pathLen 0, both with
 * critical keyCertSign|cRLSign; responder certificates carry id-kp-OCSPSigning and
 * id-pkix-ocsp-nocheck and no CA flag; the TSA certificate carries only a critical
 * id-kp-timeStamping. With app.root: external the root is offline (cli.ts ceremony) and
 * ceremony/external.ts builds the hierarchy from imported certificates, reusing the
 * responder and TSA code paths below.
 */
import type { DataProtector } from "../../src/service/context.ts";
import { AppError } from "../../src/service/errors.ts";
import { randomSerialHex } from "../../src/pki/serial.ts";
import { toPem } from "../../src/pki/keys.ts";
import { generateCaKey, importCaKey, signingAlgorithm, type CaKeyType } from "../../src/pki/signing.ts";
import { issuerHashes } from "../../src/pki/ocsp.ts";
import * as x509 from "../../src/pki/x509.ts";
import type { CaRow, PkiStore } from "./store.ts";

const DAY_MS = 86_400_000;
const BACKDATE_MS = 60_000;
const ROOT_DAYS = 20 * 365;
const ISSUING_DAYS = 10 * 365;
const RESPONDER_DAYS = 365;
const TSA_DAYS = 5 * 365;
const ID_KP_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
const ID_PKIX_OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5";
const CA_USAGE = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;

/** A CA level that can sign: certificate, key and key type. */
export interface Signer {
  id: string;
  keyType: CaKeyType;
  cert: x509.X509Certificate;
  key: CryptoKey;
}

export interface IssuingCa extends Signer {
  responder: Signer;
  /** CertID hashes, for matching OCSP requests. */
  hashes: Awaited<ReturnType<typeof issuerHashes>>;
  /** PEM of issuing CA then root. */
  chainPem: string;
}

export interface Hierarchy {
  /** The root: an online Signer, or (app.root: external) only the imported certificate. */
  root: Signer | { id: "root"; keyType: string; cert: x509.X509Certificate; key?: undefined };
  issuing: Map<CaKeyType, IssuingCa>;
  /** The time-stamping authority: P-256, issued by the first configured issuing CA. */
  tsa: Signer & { chainPem: string };
  /** With app.root: external, the admin handle for issuing CAs awaiting their certificate (ceremony/external.ts). */
  external?: ExternalRootAdmin;
}

/** What the admin routes need from an externally rooted hierarchy. */
export interface ExternalRootAdmin {
  /** The PEM CSR of an issuing CA that awaits its certificate. */
  csr(type: string): Promise<string>;
  /** Imports the issuing CA's certificate and the root (PEM chain); returns the now-ready CA's id. */
  importCertificate(type: string, chainPem: string): Promise<{ id: string; subject: string; not_after: string; root_sha256: string }>;
}

export const issuingId = (t: CaKeyType) => `issuing-${t.toLowerCase()}`;
export const responderId = (t: CaKeyType) => `ocsp-${t.toLowerCase()}`;
export const sealContext = (id: string) => `pki-ca/ca-key/${id}`;

export interface CaUrls {
  crl(caId: string): string;
  caIssuers(caId: string): string;
  ocsp: string;
}

/** Loads the hierarchy, creating whatever is missing (first start, or a newly configured key type). */
export async function loadOrCreateHierarchy(store: PkiStore, protector: DataProtector, keyTypes: CaKeyType[], urls: CaUrls): Promise<Hierarchy> {
  const tag = randomSerialHex().slice(0, 8);
  const root = await loadOrCreate(store, protector, "root", "P-256", async (keys) => {
    const now = new Date();
    return x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerialHex(),
      name: `CN=cryptoutil pki-ca Root CA ${tag}, O=cryptoutil`,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + ROOT_DAYS * DAY_MS),
      keys,
      signingAlgorithm: signingAlgorithm("P-256"),
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(CA_USAGE, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
  });

  const issuing = new Map<CaKeyType, IssuingCa>();
  for (const t of keyTypes) {
    const id = issuingId(t);
    const ca = await loadOrCreate(store, protector, id, t, async (keys) => {
      const now = new Date();
      return x509.X509CertificateGenerator.create({
        serialNumber: randomSerialHex(),
        subject: `CN=cryptoutil pki-ca Issuing CA ${t} ${tag}, O=cryptoutil`,
        issuer: root.cert.subjectName,
        notBefore: new Date(now.getTime() - BACKDATE_MS),
        notAfter: new Date(Math.min(now.getTime() + ISSUING_DAYS * DAY_MS, root.cert.notAfter.getTime())),
        publicKey: keys.publicKey,
        signingKey: root.key,
        signingAlgorithm: signingAlgorithm(root.keyType),
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(CA_USAGE, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(root.cert.publicKey),
          new x509.AuthorityInfoAccessExtension({ caIssuers: urls.caIssuers("root") }),
        ],
      });
    }, root.id);
    const responder = await loadOrCreateResponder(store, protector, t, ca, tag);
    issuing.set(t, {
      ...ca,
      responder,
      hashes: await issuerHashes(ca.cert),
      chainPem: toPem("CERTIFICATE", ca.cert.rawData) + toPem("CERTIFICATE", root.cert.rawData),
    });
  }
  const tsaIssuer = issuing.get(keyTypes[0]!)!;
  const tsa = await loadOrCreateTsa(store, protector, tsaIssuer, urls, tag);
  return { root, issuing, tsa: { ...tsa, chainPem: toPem("CERTIFICATE", tsa.cert.rawData) + tsaIssuer.chainPem } };
}

/** The delegated OCSP responder of an issuing CA (created on first use, then loaded). */
export function loadOrCreateResponder(store: PkiStore, protector: DataProtector, t: CaKeyType, ca: Signer, tag: string): Promise<Signer> {
  return loadOrCreate(store, protector, responderId(t), t, async (keys) => {
    const now = new Date();
    return x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      subject: `CN=cryptoutil pki-ca OCSP Responder ${t} ${tag}, O=cryptoutil`,
      issuer: ca.cert.subjectName,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(Math.min(now.getTime() + RESPONDER_DAYS * DAY_MS, ca.cert.notAfter.getTime())),
      publicKey: keys.publicKey,
      signingKey: ca.key,
      signingAlgorithm: signingAlgorithm(t),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([ID_KP_OCSP_SIGNING], false),
        // id-pkix-ocsp-nocheck: relying parties need not check the responder's own revocation (RFC 6960 §4.2.2.2.1).
        new x509.Extension(ID_PKIX_OCSP_NOCHECK, false, new Uint8Array([0x05, 0x00])),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
      ],
    });
  }, ca.id);
}

/** The time-stamping authority certificate under an issuing CA (created on first use, then loaded). */
export function loadOrCreateTsa(store: PkiStore, protector: DataProtector, tsaIssuer: Signer, urls: CaUrls, tag: string): Promise<Signer> {
  return loadOrCreate(store, protector, "tsa", "P-256", async (keys) => {
    const now = new Date();
    return x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      subject: `CN=cryptoutil pki-ca Time Stamping Authority ${tag}, O=cryptoutil`,
      issuer: tsaIssuer.cert.subjectName,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(Math.min(now.getTime() + TSA_DAYS * DAY_MS, tsaIssuer.cert.notAfter.getTime())),
      publicKey: keys.publicKey,
      signingKey: tsaIssuer.key,
      signingAlgorithm: signingAlgorithm(tsaIssuer.keyType),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation, true),
        // RFC 3161 §2.3: the TSA certificate has exactly id-kp-timeStamping, critical.
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.timeStamping], true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(tsaIssuer.cert.publicKey),
        new x509.CRLDistributionPointsExtension([urls.crl(tsaIssuer.id)]),
      ],
    });
  }, tsaIssuer.id);
}

export async function loadOrCreate(
  store: PkiStore,
  protector: DataProtector,
  id: string,
  keyType: CaKeyType,
  make: (keys: CryptoKeyPair) => Promise<x509.X509Certificate>,
  parentId: string | null = null,
): Promise<Signer> {
  let row = await store.getCa(id);
  // Rows of an externally rooted instance: a root without key, an issuing CA without certificate.
  if (row && (row.key_sealed.length === 0 || row.cert_der.length === 0)) throw new AppError("config_invalid", `CA ${id} belongs to an external root: set app.root: external`);
  if (!row) {
    const keys = await generateCaKey(keyType);
    const cert = await make(keys);
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    const fresh: CaRow = {
      id,
      kind: id === "root" || id === "tsa" ? id : id.startsWith("ocsp-") ? "ocsp" : "issuing",
      key_type: keyType,
      parent_id: parentId,
      cert_der: new Uint8Array(cert.rawData),
      key_sealed: await protector.encrypt(pkcs8, sealContext(id)),
      created_at: new Date().toISOString(),
    };
    pkcs8.fill(0);
    row = await store.putCaOnce(fresh);
  }
  const pkcs8 = await protector.decrypt(row.key_sealed, sealContext(id));
  try {
    return { id, keyType: row.key_type as CaKeyType, cert: new x509.X509Certificate(row.cert_der.slice().buffer as ArrayBuffer), key: await importCaKey(row.key_type as CaKeyType, pkcs8) };
  } finally {
    pkcs8.fill(0);
  }
}
