/**
 * The offline root with its key held in a PKCS#11 token (an HSM; SoftHSM2 in tests).
 * `root init` generates the key pair inside the token and self-signs the root; `root sign`
 * finds the key again by label and signs issuing-CA CSRs, through the same certificate code
 * as the passphrase-file root (root.ts): the certificate generator computes the TBS bytes and
 * asks a `Crypto` for the signature, and here that Crypto is the token.
 *
 * Guarantees: the root key is created by the token as a persistent, CKA_SENSITIVE,
 * non-extractable object (src/crypto/pkcs11), checked after generation (CKA_EXTRACTABLE
 * false, CKA_NEVER_EXTRACTABLE true) and never leaves it; the token signs a SHA-256/384
 * digest computed outside it (CKM_ECDSA). P-256 and P-384 only. Before signing, the token
 * key's public point must equal the one in root.crt.pem. root.hsm.json records only the
 * token and key labels (no PIN, no module path). Every failure is an AppError.
 */
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { AppError } from "../../../src/service/errors.ts";
import { Pkcs11Provider } from "../../../src/crypto/pkcs11/index.ts";
import type { TokenKey } from "../../../src/crypto/provider.ts";
import { toPem } from "../../../src/pki/keys.ts";
import {
  assertAbsent,
  certificateFingerprints,
  checkInitOptions,
  loadRootCertificate,
  ROOT_CERT_FILE,
  ROOT_KEY_FILE,
  selfSignedRoot,
  signIssuingCa,
  writeNew,
  type CeremonyResult,
  type RootKeyType,
  type RootSigner,
} from "./root.ts";

/** Where the ceremony directory records which token key is the root's. */
export const ROOT_HSM_FILE = "root.hsm.json";
export const HSM_ROOT_KEY_TYPES = ["P-384", "P-256"] as const;
export const DEFAULT_ROOT_KEY_LABEL = "cryptoutil-pki-root";

export interface HsmAccess {
  modulePath: string;
  /** The token's label; for `root sign`, defaults to the one recorded at init. */
  tokenLabel?: string;
  pinFile: string;
}

interface HsmRecord {
  token: string;
  key_label: string;
  key_type: RootKeyType;
}

/**
 * A `Crypto` whose `subtle.sign` signs with one token key (ECDSA over the digest named by
 * the algorithm's hash); key export is WebCrypto's (public keys only reach it).
 */
function tokenCrypto(hsm: Pkcs11Provider, key: TokenKey): Crypto {
  const subtle = {
    async sign(alg: EcdsaParams, _key: CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
      const hash = typeof alg.hash === "string" ? alg.hash : alg.hash.name;
      if (hash !== "SHA-256" && hash !== "SHA-384") throw new AppError("internal", `unexpected hash ${hash} for a token signature`, { status: 500 });
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const sig = await hsm.sign(key, hash, bytes.slice());
      return sig.slice().buffer as ArrayBuffer;
    },
    exportKey: (format: "spki", k: CryptoKey) => crypto.subtle.exportKey(format, k),
  };
  return { subtle, getRandomValues: <T extends ArrayBufferView>(a: T) => crypto.getRandomValues(a as never) as T } as unknown as Crypto;
}

/** Stands in for the private key in the certificate generator, which reads only its algorithm. */
const tokenKeyStandIn = (curve: string) => ({ type: "private", extractable: false, algorithm: { name: "ECDSA", namedCurve: curve }, usages: ["sign"] }) as unknown as CryptoKey;

async function publicCryptoKey(curve: string, point: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", point.slice(), { name: "ECDSA", namedCurve: curve }, true, ["verify"]);
}

async function openToken(h: HsmAccess, tokenLabel: string): Promise<Pkcs11Provider> {
  return Pkcs11Provider.open({ modulePath: h.modulePath, tokenLabel, pinFile: h.pinFile, sessions: 1 });
}

/** `root init` with the key in a token: generate, self-sign, record the labels. */
export async function rootInitHsm(o: { dir: string; cn: string; keyType?: RootKeyType; days?: number; pathLen?: number; hsm: HsmAccess; keyLabel?: string }): Promise<CeremonyResult & { keyLabel: string; token: string }> {
  const { keyType, days } = checkInitOptions(o);
  if (!(HSM_ROOT_KEY_TYPES as readonly string[]).includes(keyType)) throw new AppError("bad_request", `an HSM-held root key must be ${HSM_ROOT_KEY_TYPES.join(" or ")}`);
  if (!o.hsm.tokenLabel) throw new AppError("bad_request", "--hsm-token is required");
  const keyLabel = o.keyLabel ?? DEFAULT_ROOT_KEY_LABEL;
  if (!/^[\x21-\x7e]{1,64}$/.test(keyLabel)) throw new AppError("bad_request", "--hsm-key-label must be 1 to 64 printable ASCII characters");
  const certPath = join(o.dir, ROOT_CERT_FILE);
  const recordPath = join(o.dir, ROOT_HSM_FILE);
  await assertAbsent(certPath);
  await assertAbsent(recordPath);
  await assertAbsent(join(o.dir, ROOT_KEY_FILE));

  const hsm = await openToken(o.hsm, o.hsm.tokenLabel);
  try {
    const pair = await hsm.generateEcKeyPair(keyType as "P-256" | "P-384", { label: keyLabel, persistent: true });
    const key = pair.privateKey as TokenKey;
    const protection = await hsm.keyProtection(key);
    if (protection.extractable || !protection.sensitive || !protection.persistent) {
      throw new AppError("internal", "the token did not create the root key as a persistent, sensitive, non-extractable object", { status: 500 });
    }
    const publicKey = await publicCryptoKey(keyType, pair.publicKey.material);
    const cert = await selfSignedRoot({ cn: o.cn, days, pathLen: o.pathLen, keyType }, { publicKey, privateKey: tokenKeyStandIn(keyType) }, tokenCrypto(hsm, key));
    if (!(await cert.verify({ signatureOnly: true }))) throw new AppError("internal", "the token's signature on the root does not verify", { status: 500 });
    const record: HsmRecord = { token: o.hsm.tokenLabel, key_label: keyLabel, key_type: keyType };
    await writeNew(recordPath, JSON.stringify(record, null, 2) + "\n", 0o644);
    await writeNew(certPath, toPem("CERTIFICATE", cert.rawData), 0o644);
    return { certPath, keyLabel, token: o.hsm.tokenLabel, subject: cert.subject, serial: cert.serialNumber, notAfter: cert.notAfter, fingerprints: await certificateFingerprints(cert.rawData) };
  } finally {
    await hsm.close();
  }
}

async function readRecord(dir: string): Promise<HsmRecord> {
  let text: string;
  try {
    text = await readFile(join(dir, ROOT_HSM_FILE), "utf8");
  } catch {
    throw new AppError("not_found", `cannot read ${join(dir, ROOT_HSM_FILE)}: this root's key is not in an HSM (use --passphrase-file)`);
  }
  let r: Partial<HsmRecord>;
  try {
    r = JSON.parse(text) as Partial<HsmRecord>;
  } catch {
    throw new AppError("malformed_input", `${ROOT_HSM_FILE} is not JSON`);
  }
  if (typeof r.token !== "string" || typeof r.key_label !== "string" || !(HSM_ROOT_KEY_TYPES as readonly string[]).includes(r.key_type as string)) {
    throw new AppError("malformed_input", `${ROOT_HSM_FILE} must name token, key_label and key_type`);
  }
  return r as HsmRecord;
}

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** `root sign` with the token-held root key. */
export async function rootSignHsm(o: { dir: string; csrPem: string; days?: number; pathLen?: number; hsm: HsmAccess }): Promise<CeremonyResult & { pem: string; capped: boolean }> {
  let hsm: Pkcs11Provider | undefined;
  try {
    return await signIssuingCa(o, async (): Promise<RootSigner> => {
      const record = await readRecord(o.dir);
      const cert = await loadRootCertificate(o.dir);
      const token = o.hsm.tokenLabel ?? record.token;
      hsm = await openToken(o.hsm, token);
      const key = await hsm.findKey(record.key_label);
      if (key.type !== "ec-private" || key.curve !== record.key_type || !key.publicKey) throw new AppError("conflict", `token key '${record.key_label}' is not a ${record.key_type} private key`);
      // The certificate's public key must be the token key's: compare the uncompressed points.
      const certPoint = new Uint8Array(await crypto.subtle.exportKey("raw", await cert.publicKey.export()));
      if (!equalBytes(certPoint, key.publicKey)) throw new AppError("conflict", `token key '${record.key_label}' does not belong to ${ROOT_CERT_FILE}`);
      return { cert, key: tokenKeyStandIn(record.key_type), signer: tokenCrypto(hsm, key) };
    });
  } finally {
    await hsm?.close();
  }
}
