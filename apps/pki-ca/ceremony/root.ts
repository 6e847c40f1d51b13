/**
 * The offline root ceremony: create a root key and self-signed certificate into a
 * directory (the key only as passphrase-encrypted PKCS#8), and sign issuing-CA CSRs with it.
 * Runs on the ceremony machine through `cli.ts`; nothing here talks to a pki-ca instance.
 *
 * Guarantees: the root key never touches disk unencrypted (PBES2, PBKDF2-HMAC-SHA256
 * 600,000 iterations, AES-256-CBC) and its file is created 0600; existing files are never
 * overwritten (O_EXCL); the decrypted key is checked against root.crt.pem before use; a CSR
 * is signed only when its proof of possession verifies, its key type is acceptable, and it
 * asks for no extension or attribute other than basicConstraints (CA), keyUsage and SKI.
 * Serial numbers are 127-bit random positive integers. Every failure is an AppError.
 * An HSM-held root key (PKCS#11) is handled by hsm-root.ts, through the same certificate code.
 */
import { open, readFile } from "node:fs/promises";
import { x509Time } from "../../../src/pki/time.ts";
import { join } from "node:path";
import { AppError } from "../../../src/service/errors.ts";
import { decodePemBlocks } from "../../../src/pki/codec.ts";
import { decodeCsr, parseCsr, verifyPossession } from "../../../src/pki/csr.ts";
import { importKeyForCertificate, toPem } from "../../../src/pki/keys.ts";
import { randomSerialHex } from "../../../src/pki/serial.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { decryptPkcs8, encryptPkcs8, PBKDF2_ITERATIONS } from "./encrypted-pkcs8.ts";

export const ROOT_KEY_TYPES = ["P-384", "P-256", "RSA-4096"] as const;
export type RootKeyType = (typeof ROOT_KEY_TYPES)[number];

export const ROOT_CERT_FILE = "root.crt.pem";
export const ROOT_KEY_FILE = "root.key.pem";
const DAY_MS = 86_400_000;
const BACKDATE_MS = 60_000;
const MIN_PASSPHRASE = 12;
const CA_USAGE = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
/** Key types an issuing CA below the root may have. */
const ISSUING_KEY_TYPES = new Set(["P-256", "P-384", "P-521", "RSA-2048", "RSA-3072", "RSA-4096", "Ed25519"]);
const OK_EXTENSIONS = new Set(["2.5.29.19", "2.5.29.15", "2.5.29.14"]);
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

export interface Fingerprints {
  sha256: string;
  sha1: string;
}

async function fingerprints(der: ArrayBuffer): Promise<Fingerprints> {
  const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0").toUpperCase()).join(":");
  return { sha256: hex(await crypto.subtle.digest("SHA-256", der)), sha1: hex(await crypto.subtle.digest("SHA-1", der)) };
}

function keyGen(t: RootKeyType): { gen: Algorithm; sign: Algorithm } {
  switch (t) {
    case "P-256":
      return { gen: { name: "ECDSA", namedCurve: "P-256" } as EcKeyGenParams, sign: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams };
    case "P-384":
      return { gen: { name: "ECDSA", namedCurve: "P-384" } as EcKeyGenParams, sign: { name: "ECDSA", hash: "SHA-384" } as EcdsaParams };
    case "RSA-4096":
      return {
        gen: { name: "RSASSA-PKCS1-v1_5", modulusLength: 4096, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as RsaHashedKeyGenParams,
        sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as Algorithm,
      };
  }
}

/** The signature algorithm of a root, from its certificate's key. */
function rootSigningAlgorithm(cert: x509.X509Certificate): Algorithm {
  const a = cert.publicKey.algorithm as Algorithm & { namedCurve?: string };
  if (a.name === "ECDSA" && a.namedCurve === "P-384") return keyGen("P-384").sign;
  if (a.name === "ECDSA" && a.namedCurve === "P-256") return keyGen("P-256").sign;
  if (a.name === "RSASSA-PKCS1-v1_5") return keyGen("RSA-4096").sign;
  throw new AppError("config_invalid", `the root certificate's key (${a.name} ${a.namedCurve ?? ""}) is not one this ceremony signs with`);
}

async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new AppError("not_found", `cannot read ${what} ${path}${code === "ENOENT" ? ": no such file" : code ? ` (${code})` : ""}`);
  }
}

/** The passphrase is the file's first line without its newline, as `openssl -passin file:` reads it. */
export async function readPassphrase(path: string, opts: { forNewKey?: boolean } = {}): Promise<Uint8Array> {
  const bytes = await readInput(path, "passphrase file");
  let end = bytes.indexOf(0x0a);
  if (end < 0) end = bytes.length;
  const pass = bytes.slice(0, end);
  bytes.fill(0);
  if (pass.length === 0) throw new AppError("bad_request", `the passphrase file ${path} is empty`);
  if (opts.forNewKey && pass.length < MIN_PASSPHRASE) throw new AppError("bad_request", `the passphrase must be at least ${MIN_PASSPHRASE} bytes for a root key`);
  return pass;
}

/** Creates a file that must not exist yet (O_EXCL), with the given mode. */
async function createNew(path: string, data: string, mode: number): Promise<void> {
  let fh;
  try {
    fh = await open(path, "wx", mode);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EEXIST") throw new AppError("conflict", `${path} already exists; refusing to overwrite it`);
    throw new AppError("unavailable", `cannot create ${path}${code ? ` (${code})` : ""}`);
  }
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Refuses early when an output file exists (the write itself is O_EXCL as well). */
export async function assertAbsent(path: string): Promise<void> {
  try {
    await readFile(path);
  } catch {
    return;
  }
  throw new AppError("conflict", `${path} already exists; refusing to overwrite it`);
}

export interface RootInitOptions {
  dir: string;
  cn: string;
  keyType?: RootKeyType;
  days?: number;
  pathLen?: number;
  passphrase: Uint8Array;
}

export interface CeremonyResult {
  certPath: string;
  subject: string;
  serial: string;
  notAfter: Date;
  fingerprints: Fingerprints;
}

/** Checks `root init` options; returns the key type and validity to use. */
export function checkInitOptions(o: { cn: string; keyType?: RootKeyType; days?: number; pathLen?: number }): { keyType: RootKeyType; days: number } {
  const keyType = o.keyType ?? "P-384";
  const days = o.days ?? 7300;
  if (!o.cn.trim() || o.cn.length > 64) throw new AppError("bad_request", "--cn must be 1 to 64 characters");
  if (!Number.isInteger(days) || days < 1 || days > 36500) throw new AppError("bad_request", "--days must be a whole number of days from 1 to 36500");
  if (o.pathLen !== undefined && (!Number.isInteger(o.pathLen) || o.pathLen < 0 || o.pathLen > 8)) throw new AppError("bad_request", "--path-len must be 0 to 8");
  return { keyType, days };
}

/**
 * The self-signed root certificate for a key pair. `signer` (an HSM) is the Crypto whose
 * `subtle.sign` signs with `keys.privateKey`; WebCrypto by default.
 */
export async function selfSignedRoot(o: { cn: string; days: number; pathLen?: number; keyType: RootKeyType }, keys: CryptoKeyPair, signer?: Crypto): Promise<x509.X509Certificate> {
  const now = x509Time(Date.now()).getTime();
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialHex(),
      name: new x509.Name([{ CN: [o.cn] }]),
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + o.days * DAY_MS),
      keys,
      signingAlgorithm: keyGen(o.keyType).sign,
      extensions: [
        new x509.BasicConstraintsExtension(true, o.pathLen, true),
        new x509.KeyUsagesExtension(CA_USAGE, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    },
    signer,
  );
}

/** `root init`: a fresh root key and self-signed certificate in `dir`. */
export async function rootInit(o: RootInitOptions): Promise<CeremonyResult & { keyPath: string }> {
  const { keyType, days } = checkInitOptions(o);
  const certPath = join(o.dir, ROOT_CERT_FILE);
  const keyPath = join(o.dir, ROOT_KEY_FILE);
  // Both checked before any work, so a refused run leaves nothing half-written.
  await assertAbsent(certPath);
  await assertAbsent(keyPath);

  const { gen } = keyGen(keyType);
  const keys = (await crypto.subtle.generateKey(gen as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await selfSignedRoot({ cn: o.cn, days, pathLen: o.pathLen, keyType }, keys);
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  let encrypted: Uint8Array;
  try {
    encrypted = await encryptPkcs8(pkcs8, o.passphrase);
  } finally {
    pkcs8.fill(0);
  }
  await createNew(keyPath, toPem("ENCRYPTED PRIVATE KEY", encrypted), 0o600);
  await createNew(certPath, toPem("CERTIFICATE", cert.rawData), 0o644);
  return { certPath, keyPath, subject: cert.subject, serial: cert.serialNumber, notAfter: cert.notAfter, fingerprints: await fingerprints(cert.rawData) };
}

/** Writes a new file (never over an existing one) with the given mode. */
export async function writeNew(path: string, data: string, mode: number): Promise<void> {
  await createNew(path, data, mode);
}

/** Fingerprints of a certificate, as the CLI prints them. */
export const certificateFingerprints = (der: ArrayBuffer): Promise<Fingerprints> => fingerprints(der);

/** The DER of every `label` block of a PEM file (text around the blocks ignored). */
function pemBlocks(text: string, label: string): Uint8Array[] {
  return decodePemBlocks(text)
    .filter((b) => b.label === label)
    .map((b) => b.der);
}

/** A root that can sign: its certificate, its key, and (HSM) the Crypto that signs with that key. */
export interface RootSigner {
  cert: x509.X509Certificate;
  key: CryptoKey;
  signer?: Crypto;
}

/** Reads root.crt.pem from the ceremony directory. */
export async function loadRootCertificate(dir: string): Promise<x509.X509Certificate> {
  const certText = new TextDecoder().decode(await readInput(join(dir, ROOT_CERT_FILE), "root certificate"));
  const certDer = pemBlocks(certText, "CERTIFICATE")[0];
  if (!certDer) throw new AppError("malformed_input", `${ROOT_CERT_FILE} holds no CERTIFICATE block`);
  try {
    return new x509.X509Certificate(certDer.slice().buffer as ArrayBuffer);
  } catch (cause) {
    throw new AppError("malformed_input", `${ROOT_CERT_FILE} is not a valid certificate`, { cause });
  }
}

/** Loads root.crt.pem and decrypts root.key.pem, checking that they belong together. */
export async function loadRoot(dir: string, passphrase: Uint8Array): Promise<RootSigner> {
  const cert = await loadRootCertificate(dir);
  const keyText = new TextDecoder().decode(await readInput(join(dir, ROOT_KEY_FILE), "root key"));
  const keyDer = pemBlocks(keyText, "ENCRYPTED PRIVATE KEY")[0];
  if (!keyDer) throw new AppError("malformed_input", `${ROOT_KEY_FILE} holds no ENCRYPTED PRIVATE KEY block`);
  const pkcs8 = await decryptPkcs8(keyDer, passphrase);
  try {
    return { cert, key: await importKeyForCertificate(pkcs8, cert, "root key") };
  } catch (e) {
    // A wrong passphrase can, rarely, still give valid CBC padding: the garbage then fails to import.
    if (e instanceof AppError && /not a valid PKCS#8/.test(e.message)) throw new AppError("unseal_failed", "wrong passphrase or corrupt key file");
    throw e;
  } finally {
    pkcs8.fill(0);
  }
}

export interface RootSignOptions {
  dir: string;
  passphrase: Uint8Array;
  csrPem: string;
  days?: number;
  pathLen?: number;
}

/** Checks a CA CSR: proof of possession, key type, and nothing asked beyond what a CA certificate has. */
export async function checkCaCsr(csrPem: string) {
  const parsed = parseCsr(decodeCsr(csrPem));
  if (!(await verifyPossession(parsed))) throw new AppError("csr_signature_invalid", "the CSR's signature does not verify: no proof of possession");
  if (!ISSUING_KEY_TYPES.has(parsed.keyType)) throw new AppError("policy_rejected", `the CSR's key (${parsed.keyType}) is not acceptable for an issuing CA`);
  if (!parsed.commonName) throw new AppError("policy_rejected", "the CSR's subject has no common name");
  for (const a of parsed.csr.attributes) {
    if (a.type !== EXTENSION_REQUEST) throw new AppError("policy_rejected", `the CSR carries attribute ${a.type}, which a CA request does not need`);
  }
  for (const e of parsed.csr.extensions) {
    if (!OK_EXTENSIONS.has(e.type)) throw new AppError("policy_rejected", `the CSR asks for extension ${e.type}; only basicConstraints, keyUsage and subjectKeyIdentifier are accepted`);
    if (e.type === "2.5.29.19" && !new x509.BasicConstraintsExtension(e.rawData).ca) throw new AppError("policy_rejected", "the CSR asks for CA:FALSE; the root signs only CA certificates");
  }
  return parsed;
}

/** `root sign`: issues an issuing-CA certificate for a CSR with the root in `dir`. */
export async function rootSign(o: RootSignOptions): Promise<CeremonyResult & { pem: string; capped: boolean }> {
  return signIssuingCa(o, () => loadRoot(o.dir, o.passphrase));
}

/** Checks the options and the CSR, then loads the root (`load`) and signs the issuing-CA certificate. */
export async function signIssuingCa(o: { csrPem: string; days?: number; pathLen?: number }, load: () => Promise<RootSigner>): Promise<CeremonyResult & { pem: string; capped: boolean }> {
  const days = o.days ?? 1825;
  const pathLen = o.pathLen ?? 0;
  if (!Number.isInteger(days) || days < 1 || days > 36500) throw new AppError("bad_request", "--days must be a whole number of days from 1 to 36500");
  if (!Number.isInteger(pathLen) || pathLen < 0 || pathLen > 8) throw new AppError("bad_request", "--path-len must be 0 to 8");
  const csr = await checkCaCsr(o.csrPem);
  const root = await load();
  const rootPathLen = root.cert.getExtension(x509.BasicConstraintsExtension)?.pathLength;
  if (rootPathLen !== undefined && pathLen >= rootPathLen) throw new AppError("bad_request", `--path-len must be below the root's pathLen ${rootPathLen}`);
  const rootSki = root.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const now = x509Time(Date.now()).getTime();
  const wanted = now + days * DAY_MS;
  const notAfter = new Date(Math.min(wanted, root.cert.notAfter.getTime()));
  if (notAfter.getTime() <= now) throw new AppError("conflict", "the root certificate has expired");
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialHex(),
      subject: csr.csr.subjectName,
      issuer: root.cert.subjectName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter,
      publicKey: csr.csr.publicKey,
      signingKey: root.key,
      signingAlgorithm: rootSigningAlgorithm(root.cert),
      extensions: [
        new x509.BasicConstraintsExtension(true, pathLen, true),
        new x509.KeyUsagesExtension(CA_USAGE, true),
        await x509.SubjectKeyIdentifierExtension.create(csr.csr.publicKey),
        // The root's own SKI when it has one, so the AKI matches whatever method made it.
        rootSki ? new x509.AuthorityKeyIdentifierExtension(rootSki) : await x509.AuthorityKeyIdentifierExtension.create(root.cert.publicKey),
      ],
    },
    root.signer,
  );
  return {
    certPath: "",
    pem: toPem("CERTIFICATE", cert.rawData),
    subject: cert.subject,
    serial: cert.serialNumber,
    notAfter,
    capped: wanted > notAfter.getTime(),
    fingerprints: await fingerprints(cert.rawData),
  };
}

/** Writes the signed certificate to a new file (never over an existing one). */
export async function writeNewFile(path: string, pem: string): Promise<void> {
  await createNew(path, pem, 0o644);
}

export const KEY_FILE_DESCRIPTION = `encrypted PKCS#8, PBES2 PBKDF2-HMAC-SHA256 ${PBKDF2_ITERATIONS} iterations, AES-256-CBC`;
