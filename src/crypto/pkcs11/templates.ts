/**
 * PKCS#11 encodings: curve parameters, EC points, and the attribute templates of the keys
 * this bridge creates.
 *
 * Security: every key this bridge generates or imports is CKA_SENSITIVE true and
 * CKA_EXTRACTABLE false, so its value can never be read or wrapped out of the token; the
 * only exception is a caller's in-memory key imported as a short-lived session object to be
 * wrapped (it was already outside the token).
 */
import type { Template } from "pkcs11js";
import { type EcCurve, CURVE_BYTES, malformed } from "../provider.ts";
import type { Pkcs11Lib } from "./module.ts";

/** DER of the named-curve OIDs (CKA_EC_PARAMS). */
export const EC_PARAMS: Record<EcCurve, Buffer> = {
  "P-256": Buffer.from("06082a8648ce3d030107", "hex"), // 1.2.840.10045.3.1.7
  "P-384": Buffer.from("06052b81040022", "hex"), // 1.3.132.0.34
};

export function curveOfParams(params: Buffer): EcCurve {
  for (const [curve, der] of Object.entries(EC_PARAMS) as [EcCurve, Buffer][]) if (der.equals(params)) return curve;
  throw malformed("the token key is on an unsupported curve");
}

/** CKA_EC_POINT holds the SEC1 point inside a DER OCTET STRING (short form: points are < 128 bytes). */
export function encodeEcPoint(point: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([0x04, point.length]), point]);
}

/** Accepts the DER form and, leniently, the bare point some modules return. */
export function decodeEcPoint(curve: EcCurve, value: Buffer): Uint8Array {
  const n = 2 * CURVE_BYTES[curve] + 1;
  if (value.length === n && value[0] === 4) return new Uint8Array(value);
  if (value.length === n + 2 && value[0] === 0x04 && value[1] === n) return new Uint8Array(value.subarray(2));
  throw malformed("the token returned an EC point in an unknown encoding");
}

export interface Naming {
  label: string;
  id: Buffer;
  persistent: boolean;
}

/** Attributes every private/secret key gets: findable, sensitive, never extractable. */
function protectedKey(P: Pkcs11Lib, n: Naming): Template {
  return [
    { type: P.CKA_TOKEN, value: n.persistent },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_LABEL, value: n.label },
    { type: P.CKA_ID, value: n.id },
  ];
}

/** `bytes` undefined: the length comes from elsewhere (an unwrapped or derived value). */
export function aesKeyTemplate(P: Pkcs11Lib, n: Naming, bytes: number | undefined, value?: Uint8Array): Template {
  const t: Template = [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
    ...protectedKey(P, n),
    { type: P.CKA_ENCRYPT, value: true },
    { type: P.CKA_DECRYPT, value: true },
    { type: P.CKA_WRAP, value: true },
    { type: P.CKA_UNWRAP, value: true },
  ];
  if (value) t.push({ type: P.CKA_VALUE, value: Buffer.from(value) });
  else if (bytes !== undefined) t.push({ type: P.CKA_VALUE_LEN, value: bytes });
  return t;
}

/** A generic secret (ECDH output, HMAC key): usable for HMAC and as derivation input. */
export function secretKeyTemplate(P: Pkcs11Lib, n: Naming, bytes: number | undefined, value?: Uint8Array): Template {
  const t: Template = [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    ...protectedKey(P, n),
    { type: P.CKA_SIGN, value: true },
    { type: P.CKA_VERIFY, value: true },
    { type: P.CKA_DERIVE, value: true },
  ];
  if (value) t.push({ type: P.CKA_VALUE, value: Buffer.from(value) });
  else if (bytes !== undefined) t.push({ type: P.CKA_VALUE_LEN, value: bytes });
  return t;
}

export function ecPrivateTemplate(P: Pkcs11Lib, n: Naming, curve: EcCurve, d?: Uint8Array): Template {
  const t: Template = [
    { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
    ...protectedKey(P, n),
    { type: P.CKA_SIGN, value: true },
    { type: P.CKA_DERIVE, value: true },
  ];
  if (d) t.push({ type: P.CKA_EC_PARAMS, value: EC_PARAMS[curve] }, { type: P.CKA_VALUE, value: Buffer.from(d) });
  return t;
}

export function ecPublicTemplate(P: Pkcs11Lib, n: Naming, curve: EcCurve, point?: Uint8Array): Template {
  const t: Template = [
    { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
    { type: P.CKA_TOKEN, value: n.persistent },
    { type: P.CKA_PRIVATE, value: false },
    { type: P.CKA_LABEL, value: n.label },
    { type: P.CKA_ID, value: n.id },
    { type: P.CKA_VERIFY, value: true },
    { type: P.CKA_EC_PARAMS, value: EC_PARAMS[curve] },
  ];
  if (point) t.push({ type: P.CKA_EC_POINT, value: encodeEcPoint(point) });
  return t;
}
