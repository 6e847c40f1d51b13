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
 * responder and TSA code paths below. Responder and TSA certificates are renewed (new key,
 * same subject) before they expire (`renewSigners`); an issuing CA's CRL shard count is
 * fixed in its record when it is created.
 */
import type { DataProtector } from "../../src/service/context.ts";
import { x509Time } from "../../src/pki/time.ts";
import { AppError } from "../../src/service/errors.ts";
import { randomSerialHex } from "../../src/pki/serial.ts";
import { toPem } from "../../src/pki/keys.ts";
import { generateCaKey, importCaKey, signingAlgorithm, type CaKeyType, type SignerKeyType } from "../../src/pki/signing.ts";
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
/** A CA level or delegated signer: an issuing CA's key type, or (SCEP RA) any signer key type. */
export interface Signer<K extends SignerKeyType = CaKeyType> {
  id: string;
  keyType: K;
  cert: x509.X509Certificate;
  key: CryptoKey;
}

export interface IssuingCa extends Signer {
  responder: Signer;
  /** CRL shards of this CA (1: one unsharded CRL); fixed when the CA was created. */
  crlShards: number;
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

/** Settings applied when a CA level is created (or, for responder and TSA, renewed). */
export interface HierarchyOptions {
  /** CRL shards for issuing CAs created now (existing CAs keep theirs). */
  crlShards: number;
  responderValidityHours: number;
  tsaValidityHours: number;
}

export const DEFAULT_HIERARCHY_OPTIONS: HierarchyOptions = { crlShards: 1, responderValidityHours: RESPONDER_DAYS * 24, tsaValidityHours: TSA_DAYS * 24 };

/** The stored CRL shard count of an issuing CA (1 for CAs created before sharding existed). */
export async function crlShardsOf(store: PkiStore, id: string): Promise<number> {
  return (await store.getCa(id))?.crl_shards ?? 1;
}

export interface CaUrls {
  crl(caId: string): string;
  caIssuers(caId: string): string;
  ocsp: string;
}

/** Loads the hierarchy, creating whatever is missing (first start, or a newly configured key type). */
export async function loadOrCreateHierarchy(store: PkiStore, protector: DataProtector, keyTypes: CaKeyType[], urls: CaUrls, opts: HierarchyOptions = DEFAULT_HIERARCHY_OPTIONS): Promise<Hierarchy> {
  const tag = randomSerialHex().slice(0, 8);
  const root = await loadOrCreate(store, protector, "root", "P-256", async (keys) => {
    const now = new Date();
    return x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerialHex(),
      name: `CN=cryptoutil pki-ca Root CA ${tag}, O=cryptoutil`,
      notBefore: x509Time(now.getTime() - BACKDATE_MS),
      notAfter: x509Time(now.getTime() + ROOT_DAYS * DAY_MS),
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
        notBefore: x509Time(now.getTime() - BACKDATE_MS),
        notAfter: x509Time(Math.min(now.getTime() + ISSUING_DAYS * DAY_MS, root.cert.notAfter.getTime())),
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
    }, root.id, opts.crlShards);
    const responder = await loadOrCreateResponder(store, protector, t, ca, tag, opts);
    issuing.set(t, {
      ...ca,
      responder,
      crlShards: await crlShardsOf(store, id),
      hashes: await issuerHashes(ca.cert),
      chainPem: toPem("CERTIFICATE", ca.cert.rawData) + toPem("CERTIFICATE", root.cert.rawData),
    });
  }
  const tsaIssuer = issuing.get(keyTypes[0]!)!;
  const tsa = await loadOrCreateTsa(store, protector, tsaIssuer, urls, tag, opts);
  return { root, issuing, tsa: { ...tsa, chainPem: toPem("CERTIFICATE", tsa.cert.rawData) + tsaIssuer.chainPem } };
}

/** A leaf certificate for one of the CA's own signers (OCSP responder, TSA, SCEP RA): end entity, the given key usages, key ids. */
export async function delegatedCertificate(keys: CryptoKeyPair, subject: string | x509.Name, issuer: Signer, validityHours: number, usages: number, more: x509.Extension[]): Promise<x509.X509Certificate> {
  const now = Date.now();
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject,
    issuer: issuer.cert.subjectName,
    notBefore: x509Time(now - BACKDATE_MS),
    notAfter: x509Time(Math.min(now + validityHours * 3_600_000, issuer.cert.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey: issuer.key,
    signingAlgorithm: signingAlgorithm(issuer.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(usages, true),
      ...more,
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey),
    ],
  });
}

/** A delegated OCSP responder certificate for `keys`, issued by `ca` (same key type). */
function responderCertificate(keys: CryptoKeyPair, subject: string | x509.Name, ca: Signer, validityHours: number): Promise<x509.X509Certificate> {
  return delegatedCertificate(keys, subject, ca, validityHours, x509.KeyUsageFlags.digitalSignature, [
    new x509.ExtendedKeyUsageExtension([ID_KP_OCSP_SIGNING], false),
    // id-pkix-ocsp-nocheck: relying parties need not check the responder's own revocation (RFC 6960 §4.2.2.2.1).
    new x509.Extension(ID_PKIX_OCSP_NOCHECK, false, new Uint8Array([0x05, 0x00])),
  ]);
}

/** A TSA certificate for `keys`, issued by `tsaIssuer`. */
function tsaCertificate(keys: CryptoKeyPair, subject: string | x509.Name, tsaIssuer: Signer, validityHours: number, urls: CaUrls): Promise<x509.X509Certificate> {
  return delegatedCertificate(keys, subject, tsaIssuer, validityHours, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation, [
    // RFC 3161 §2.3: the TSA certificate has exactly id-kp-timeStamping, critical.
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.timeStamping], true),
    new x509.CRLDistributionPointsExtension([urls.crl(tsaIssuer.id)]),
  ]);
}

/** The delegated OCSP responder of an issuing CA (created on first use, then loaded). */
export function loadOrCreateResponder(store: PkiStore, protector: DataProtector, t: CaKeyType, ca: Signer, tag: string, opts: HierarchyOptions = DEFAULT_HIERARCHY_OPTIONS): Promise<Signer> {
  return loadOrCreate(store, protector, responderId(t), t, (keys) => responderCertificate(keys, `CN=cryptoutil pki-ca OCSP Responder ${t} ${tag}, O=cryptoutil`, ca, opts.responderValidityHours), ca.id);
}

/** The time-stamping authority certificate under an issuing CA (created on first use, then loaded). */
export function loadOrCreateTsa(store: PkiStore, protector: DataProtector, tsaIssuer: Signer, urls: CaUrls, tag: string, opts: HierarchyOptions = DEFAULT_HIERARCHY_OPTIONS): Promise<Signer> {
  return loadOrCreate(store, protector, "tsa", "P-256", (keys) => tsaCertificate(keys, `CN=cryptoutil pki-ca Time Stamping Authority ${tag}, O=cryptoutil`, tsaIssuer, opts.tsaValidityHours, urls), tsaIssuer.id);
}

/** True when less than `fraction` of the certificate's validity remains at `now`. */
export function renewalDue(cert: x509.X509Certificate, now: number, fraction: number): boolean {
  const total = cert.notAfter.getTime() - cert.notBefore.getTime();
  return cert.notAfter.getTime() - now < total * fraction;
}

/**
 * Renews the delegated OCSP responders and the TSA when less than `fraction` of their
 * validity remains at `now`: a fresh key and certificate with the same subject from the
 * same issuer, swapped in place (callers holding the level see the new one). The stored row
 * is replaced only if it still holds the old certificate, so instances sharing a database
 * renew once; the loser loads the winner's. The old certificate is kept as `<id>@<serial>`
 * without its key: responses and tokens signed before carry it and keep verifying until it
 * expires. A renewal that would not extend the validity (the issuer expires first) is skipped.
 * Returns the ids renewed.
 */
export async function renewSigners(store: PkiStore, protector: DataProtector, h: Hierarchy, urls: CaUrls, opts: HierarchyOptions, now: number, fraction: number): Promise<string[]> {
  const renewed: string[] = [];
  for (const ca of h.issuing.values()) {
    const r = ca.responder;
    if (!renewalDue(r.cert, now, fraction)) continue;
    const next = await renewOne(store, protector, r, ca.cert.notAfter, (keys) => responderCertificate(keys, r.cert.subjectName, ca, opts.responderValidityHours));
    if (next) {
      Object.assign(r, next);
      renewed.push(r.id);
    }
  }
  let tsa: Hierarchy["tsa"] | undefined;
  try {
    tsa = h.tsa;
  } catch {
    tsa = undefined; // an external root not imported yet: no TSA to renew
  }
  if (tsa && renewalDue(tsa.cert, now, fraction)) {
    const issuer = [...h.issuing.values()].find((i) => i.cert.subject === tsa.cert.issuer);
    if (issuer) {
      const next = await renewOne(store, protector, tsa, issuer.cert.notAfter, (keys) => tsaCertificate(keys, tsa.cert.subjectName, issuer, opts.tsaValidityHours, urls));
      if (next) {
        Object.assign(tsa, next, { chainPem: toPem("CERTIFICATE", next.cert.rawData) + issuer.chainPem });
        renewed.push(tsa.id);
      }
    }
  }
  return renewed;
}

/**
 * Replaces one signer's key and certificate (same subject, `make` signs the new one) unless the
 * issuer's expiry would cap it where the old one ends; see renewSigners. Undefined when nothing
 * changed, else the current signer (this instance's renewal or another's).
 */
export async function renewOne<K extends SignerKeyType>(store: PkiStore, protector: DataProtector, old: Signer<K>, issuerNotAfter: Date, make: (keys: CryptoKeyPair) => Promise<x509.X509Certificate>): Promise<Signer<K> | undefined> {
  // Nothing to gain when the issuer's own expiry caps the new certificate where the old one ends.
  if (issuerNotAfter.getTime() - old.cert.notAfter.getTime() < 60_000) return undefined;
  const keys = await generateCaKey(old.keyType);
  const cert = await make(keys);
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const sealed = await protector.encrypt(pkcs8, sealContext(old.id));
  pkcs8.fill(0);
  const oldDer = new Uint8Array(old.cert.rawData);
  const row = await store.getCa(old.id);
  if (!row) throw new AppError("internal", `CA ${old.id} is not stored`, { status: 500 });
  if (bytesEqual(row.cert_der, oldDer) && (await store.replaceCaCertificate(old.id, oldDer, new Uint8Array(cert.rawData), sealed))) {
    await store.putCaOnce({ ...row, id: `${old.id}@${old.cert.serialNumber.toLowerCase()}`, key_sealed: new Uint8Array(0), created_at: new Date().toISOString() });
  }
  // Whatever the store now holds (ours, or another instance's renewal) is the current signer.
  const current = (await store.getCa(old.id))!;
  if (bytesEqual(current.cert_der, oldDer)) return undefined;
  const key = await protector.decrypt(current.key_sealed, sealContext(old.id));
  try {
    return { id: old.id, keyType: old.keyType, cert: new x509.X509Certificate(current.cert_der.slice().buffer as ArrayBuffer), key: await importCaKey(old.keyType, key) };
  } finally {
    key.fill(0);
  }
}

const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

export async function loadOrCreate<K extends SignerKeyType = CaKeyType>(
  store: PkiStore,
  protector: DataProtector,
  id: string,
  keyType: K,
  make: (keys: CryptoKeyPair) => Promise<x509.X509Certificate>,
  parentId: string | null = null,
  crlShards: number | null = null,
): Promise<Signer<K>> {
  let row = await store.getCa(id);
  // Rows of an externally rooted instance: a root without key, an issuing CA without certificate.
  if (row && (row.key_sealed.length === 0 || row.cert_der.length === 0)) throw new AppError("config_invalid", `CA ${id} belongs to an external root: set app.root: external`);
  if (!row) {
    const keys = await generateCaKey(keyType);
    const cert = await make(keys);
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    const fresh: CaRow = {
      id,
      kind: id === "root" || id === "tsa" ? id : id.startsWith("ocsp-") ? "ocsp" : id.startsWith("scep-ra-") ? "scep-ra" : id.startsWith("cmp-ra-") ? "cmp-ra" : "issuing",
      key_type: keyType,
      parent_id: parentId,
      cert_der: new Uint8Array(cert.rawData),
      key_sealed: await protector.encrypt(pkcs8, sealContext(id)),
      created_at: new Date().toISOString(),
      crl_shards: crlShards,
    };
    pkcs8.fill(0);
    row = await store.putCaOnce(fresh);
  }
  const pkcs8 = await protector.decrypt(row.key_sealed, sealContext(id));
  try {
    return { id, keyType: row.key_type as K, cert: new x509.X509Certificate(row.cert_der.slice().buffer as ArrayBuffer), key: await importCaKey(row.key_type as K, pkcs8) };
  } finally {
    pkcs8.fill(0);
  }
}
