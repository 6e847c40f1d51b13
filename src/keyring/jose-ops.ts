/**
 * JOSE operations on keyring versions, shared by sm-kms and jose-ja: compact JWS sign and
 * verify, JWE header parsing and opening, with one stable error code per failure kind.
 *
 * Guarantees:
 * - A JWS/JWE's `kid` must name a version of the key the caller addressed; its `alg` (and
 *   `enc`) must be that key's own: no algorithm substitution, no key confusion.
 * - Every failure to verify is `signature_invalid`, to decrypt `decryption_failed`, whatever
 *   check failed; input that is not JOSE at all is `malformed_jose`. JOSE parsing and the
 *   crypto are `jose`'s, on WebCrypto (constant-time comparisons of tags and signatures).
 */
import { contentEncryptions } from "./algorithms.ts";
import { CompactSign, compactDecrypt, compactVerify, decodeProtectedHeader, flattenedDecrypt, errors as joseErrors, type FlattenedJWE, type ProtectedHeaderParameters } from "jose";
import { AppError } from "../service/errors.ts";
import type { ActiveVersion, Keyring } from "./keyring.ts";
import { parseKid } from "./keyring.ts";
import type { KeyPurpose } from "./algorithms.ts";

export const malformedJose = (what: string) => new AppError("malformed_jose", `malformed ${what}`, { status: 400 });
export const decryptionFailed = () => new AppError("decryption_failed", "the JWE does not decrypt with this key and context");
export const signatureInvalid = () => new AppError("signature_invalid", "the signature does not verify with this key", { status: 400 });

/** The version named by a JOSE object's `kid`, which must be a version of key `id`. */
export function versionFromKid(kid: unknown, id: string, fail: () => AppError): number {
  const k = parseKid(kid);
  if (!k || k.id !== id) throw fail();
  return k.version;
}

/** The protected header of a compact JWS (3 parts) or JWE (5 parts) or a flattened JWE; else `malformed_jose`. */
export function protectedHeaderOf(jose: string | FlattenedJWE, parts: 3 | 5, what: string): ProtectedHeaderParameters {
  try {
    if (typeof jose === "string" && jose.split(".").length !== parts) throw new Error("parts");
    return decodeProtectedHeader(jose as string);
  } catch {
    throw malformedJose(what);
  }
}

/** A compact JWS over `payload` with the version's key; `kid` names the version. */
export async function signCompact(active: ActiveVersion, payload: Uint8Array, extraHeader: Record<string, string> = {}): Promise<string> {
  return new CompactSign(payload).setProtectedHeader({ ...extraHeader, alg: active.spec.jose, kid: active.kid }).sign(active.usable.secret);
}

/**
 * Verifies a compact JWS (payload attached) against the version its kid names, of key `id`
 * of one of `purposes`. Returns the version used and the verified payload and header.
 */
export async function verifyCompact(
  ring: Keyring,
  tenant: string,
  id: string,
  jws: string,
  purposes: readonly KeyPurpose[] = ["sign"],
): Promise<{ active: ActiveVersion; payload: Uint8Array; header: ProtectedHeaderParameters }> {
  const header = protectedHeaderOf(jws, 3, "JWS");
  const version = versionFromKid(header.kid, id, signatureInvalid);
  const active = await ring.version(tenant, id, version, purposes);
  if (header.alg !== active.spec.jose) throw signatureInvalid();
  const key = active.spec.asymmetric ? active.usable.public! : active.usable.secret;
  try {
    const r = await compactVerify(jws, key, { algorithms: [active.spec.jose] });
    return { active, payload: r.payload, header: r.protectedHeader };
  } catch (e) {
    if (e instanceof AppError) throw e;
    if (e instanceof joseErrors.JWSInvalid) throw malformedJose("JWS");
    throw signatureInvalid();
  }
}

/** Opens a compact or flattened JWE with the version's private/secret key, accepting only its own alg and enc. */
export async function openJwe(active: ActiveVersion, jwe: string | FlattenedJWE): Promise<Uint8Array> {
  const opts = { keyManagementAlgorithms: [active.spec.jose], contentEncryptionAlgorithms: [...contentEncryptions(active.spec)] };
  try {
    const r = typeof jwe === "string" ? await compactDecrypt(jwe, active.usable.secret, opts) : await flattenedDecrypt(jwe, active.usable.secret, opts);
    return r.plaintext;
  } catch (e) {
    if (e instanceof AppError) throw e;
    if (e instanceof joseErrors.JWEInvalid) throw malformedJose("JWE");
    throw decryptionFailed();
  }
}
