/**
 * TLS material for a service's HTTPS servers in *auto* mode: a leaf from the
 * shared suite CA, kept in the service's own store and reissued when needed.
 *
 * Two stores are involved. The suite CA lives in a store shared by every service
 * of the suite on the machine, sealed with a key derived from the suite's unseal
 * secret files (see suite-ca-store.ts and sealer.ts: the per-service barrier is
 * not shared, so it cannot seal the CA). The leaf lives in the service's own
 * store, its key sealed by the service's barrier.
 *
 * Guarantees: the leaf private key is stored only sealed, under a context naming
 * the service and the leaf serial; the PEM of the key returned for the TLS server
 * exists in memory only. A stored leaf is reused only when it was issued by the
 * current intermediate (signature verified), carries exactly the wanted SANs,
 * is not within its renewal window, and its key opens and matches it; otherwise
 * a new leaf is issued and stored.
 */
import { AppError } from "../service/errors.ts";
import { corrupt, decodeRecord, encodeRecord, fromBase64, toBase64 } from "./codec.ts";
import { exportPkcs8, importKeyForCertificate, toPem } from "./keys.ts";
import { checkServiceName, issueLeaf, MAX_LEAF_VALIDITY_DAYS, sansOf, type LeafUsage } from "./leaf.ts";
import { normalizeSans, sameSans, type SubjectAltNames } from "./sans.ts";
import type { Sealer } from "./sealer.ts";
import type { KeyValueStore } from "./store.ts";
import { DAY_MS, type SuiteCa } from "./suite-ca.ts";
import { loadOrCreateSuiteCa, trustBundlePem, type SuiteCaLocation } from "./suite-ca-store.ts";
import * as x509 from "./x509.ts";

/** What a TLS server needs, in PEM. */
export interface TlsMaterial {
  /** Leaf then intermediate. */
  certChainPem: string;
  /** PKCS#8 PEM of the leaf key: keep in memory, never log or write it. */
  keyPem: string;
  /** Trust anchor for clients (the suite root, or the configured CA in static mode). */
  caBundlePem: string;
  /** Facts about the leaf, for logs and health details (no secrets). */
  leaf: { serialNumber: string; notBefore?: Date; notAfter: Date; sans: SubjectAltNames };
}

/** Why a leaf was (re)issued, or "loaded" when the stored one was reused. */
export type LeafOutcome = "loaded" | "absent" | "ca_changed" | "sans_changed" | "renewal_due" | "key_unusable";

export interface LoadOrCreateTlsOptions {
  /** The service's own store (the leaf record). */
  store: KeyValueStore;
  /** The service's barrier. */
  sealer: Sealer;
  serviceName: string;
  sans: SubjectAltNames;
  /** The shared suite CA; `ca` instead skips loading it (tests, or a caller that already has it). */
  suiteCa: SuiteCaLocation | { ca: SuiteCa };
  /** Lets one service keep several leaves (e.g. "public", "admin"); default "server". */
  label?: string;
  /** "server" (default) or "client" (clientAuth only: the service's certificate for mTLS calls). */
  usage?: LeafUsage;
  validityDays?: number;
  now?: Date;
}

const FORMAT = "cryptoutil-tls-leaf/v1";
const FIELDS = ["certPem", "keySealed"] as const;
/** Renew when less than this remains (or a third of the validity, for short-lived leaves). */
export const RENEW_BEFORE_DAYS = 30;

/** Store entry name of a service's leaf. */
export function leafRecordName(serviceName: string, label = "server"): string {
  return `tls/${checkServiceName(serviceName)}/${checkServiceName(label)}-leaf.json`;
}

function leafKeyContext(serviceName: string, cert: x509.X509Certificate): string {
  return `cryptoutil/tls/v1/${serviceName}/leaf-key/${cert.serialNumber.toLowerCase()}`;
}

/** True when less than RENEW_BEFORE_DAYS, or a third of the validity, remains at `now`. */
export function renewalDue(cert: Pick<x509.X509Certificate, "notBefore" | "notAfter">, now: Date): boolean {
  const total = cert.notAfter.getTime() - cert.notBefore.getTime();
  const window = Math.min(RENEW_BEFORE_DAYS * DAY_MS, total / 3);
  return cert.notAfter.getTime() - now.getTime() < window;
}

async function issuedBy(cert: x509.X509Certificate, ca: SuiteCa): Promise<boolean> {
  if (cert.issuer !== ca.intermediate.cert.subject) return false;
  return cert.verify({ publicKey: ca.intermediate.cert.publicKey, signatureOnly: true });
}

/** Tries the stored leaf; returns it with its PKCS#8 key, or the reason it cannot be used. */
async function tryStoredLeaf(
  opts: LoadOrCreateTlsOptions,
  ca: SuiteCa,
  name: string,
  now: Date,
): Promise<{ cert: x509.X509Certificate; pkcs8: Uint8Array } | Exclude<LeafOutcome, "loaded">> {
  const bytes = await opts.store.get(name);
  if (bytes === undefined) return "absent";
  const rec = decodeRecord(bytes, FORMAT, FIELDS, `TLS leaf of ${opts.serviceName}`);
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(rec.certPem);
  } catch (cause) {
    throw corrupt(`TLS leaf of ${opts.serviceName}`, cause);
  }
  if (!(await issuedBy(cert, ca))) return "ca_changed";
  if (!sameSans(sansOf(cert), opts.sans)) return "sans_changed";
  if (renewalDue(cert, now)) return "renewal_due";
  let pkcs8: Uint8Array;
  try {
    pkcs8 = await opts.sealer.open(fromBase64(rec.keySealed), leafKeyContext(opts.serviceName, cert));
    await importKeyForCertificate(pkcs8, cert, `TLS leaf of ${opts.serviceName}`);
  } catch {
    // A key that no longer opens (barrier key lost) only costs a new leaf: the CA is intact.
    return "key_unusable";
  }
  return { cert, pkcs8 };
}

/**
 * TLS material for one service in auto mode: loads the suite CA (creating it on the
 * suite's first start), then reuses the service's stored leaf or issues a new one.
 *
 * @example
 *   const { material } = await loadOrCreateTlsMaterial({
 *     store, sealer: barrier, serviceName: "sm-kms",
 *     sans: serverSans({ bindAddresses: ["0.0.0.0", "127.0.0.1"] }),
 *     suiteCa: { store: new DirectoryStore(join(dataDir, "suite-ca")), sealer: await suiteCaSealerFromFiles(unsealFiles) },
 *   });
 *   await runtime.serve({ tls: { cert: material.certChainPem, key: material.keyPem }, ... });
 */
export async function loadOrCreateTlsMaterial(
  opts: LoadOrCreateTlsOptions,
): Promise<{ material: TlsMaterial; outcome: LeafOutcome; caCreated: boolean }> {
  checkServiceName(opts.serviceName);
  const wanted = normalizeSans(opts.sans);
  const validityDays = opts.validityDays ?? MAX_LEAF_VALIDITY_DAYS;
  const now = opts.now ?? new Date();
  const { ca, created: caCreated } = "ca" in opts.suiteCa ? { ca: opts.suiteCa.ca, created: false } : await loadOrCreateSuiteCa(opts.suiteCa);
  const name = leafRecordName(opts.serviceName, opts.label);

  const stored = await tryStoredLeaf({ ...opts, sans: wanted }, ca, name, now);
  let cert: x509.X509Certificate;
  let pkcs8: Uint8Array;
  let outcome: LeafOutcome;
  if (typeof stored === "string") {
    const issued = await issueLeaf(ca, { serviceName: opts.serviceName, ...wanted, validityDays, now, usage: opts.usage });
    cert = issued.cert;
    pkcs8 = await exportPkcs8(issued.keys.privateKey);
    const sealed = await opts.sealer.seal(pkcs8, leafKeyContext(opts.serviceName, cert));
    await opts.store.put(name, encodeRecord({ format: FORMAT, certPem: cert.toString("pem"), keySealed: toBase64(sealed) }));
    outcome = stored;
  } else {
    ({ cert, pkcs8 } = stored);
    outcome = "loaded";
  }
  try {
    const material: TlsMaterial = {
      certChainPem: toPem("CERTIFICATE", new Uint8Array(cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData)),
      keyPem: toPem("PRIVATE KEY", pkcs8),
      caBundlePem: trustBundlePem(ca),
      leaf: { serialNumber: cert.serialNumber.toLowerCase(), notBefore: cert.notBefore, notAfter: cert.notAfter, sans: wanted },
    };
    return { material, outcome, caCreated };
  } finally {
    pkcs8.fill(0);
  }
}

/**
 * Writes the trust bundle (the root CA PEM) to `path`, atomically, so clients can use it
 * (`curl --cacert path`). The file holds only public certificates.
 */
export async function writeTrustBundle(path: string, material: Pick<TlsMaterial, "caBundlePem">): Promise<void> {
  const fs = await import("node:fs/promises");
  const rnd = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
  const tmp = `${path}.${rnd}.tmp`;
  try {
    await fs.writeFile(tmp, material.caBundlePem, { mode: 0o644 });
    await fs.rename(tmp, path);
  } catch (cause) {
    await fs.unlink(tmp).catch(() => undefined);
    throw new AppError("unavailable", `cannot write the trust bundle to ${path}`, { cause });
  }
}
