/**
 * ECDSA signature encodings: the DER ECDSA-Sig-Value X.509, OCSP and CMS carry, and the
 * fixed-width r ‖ s (IEEE P1363) WebCrypto and PKCS#11 produce.
 *
 * Guarantees: `derToRaw` accepts only SEQUENCE { INTEGER r, INTEGER s } with positive,
 * minimally encoded integers that fit the curve and nothing after them (anything else is
 * undefined, never an exception); `rawToDer` writes minimal positive integers. Signatures are
 * public values, so nothing here needs constant time.
 */

/** r and s octet lengths by curve. */
export const EC_SIZES: Record<string, number> = { "P-256": 32, "P-384": 48, "P-521": 66 };

function readLength(b: Uint8Array, at: number): [len: number, next: number] | undefined {
  const first = b[at];
  if (first === undefined) return undefined;
  if (first < 0x80) return [first, at + 1];
  // Long form only for lengths that need it (DER), one length octet at most here.
  if (first !== 0x81 || b[at + 1] === undefined || b[at + 1]! < 0x80) return undefined;
  return [b[at + 1]!, at + 2];
}

function readInteger(b: Uint8Array, at: number, end: number, size: number, out: Uint8Array, offset: number): number | undefined {
  if (b[at] !== 0x02) return undefined;
  const l = readLength(b, at + 1);
  if (!l) return undefined;
  const [len, start] = l;
  const stop = start + len;
  if (len === 0 || stop > end) return undefined;
  // Positive and minimal: no sign bit, and a leading zero only in front of a high bit.
  if (b[start]! & 0x80) return undefined;
  if (b[start] === 0 && len > 1 && !(b[start + 1]! & 0x80)) return undefined;
  let from = start;
  while (from < stop - 1 && b[from] === 0) from++;
  const n = stop - from;
  if (n > size) return undefined;
  out.set(b.subarray(from, stop), offset + size - n);
  return stop;
}

/** DER ECDSA-Sig-Value to r ‖ s of `size` octets each; undefined when it is not one. */
export function derToRaw(der: Uint8Array, size: number): Uint8Array<ArrayBuffer> | undefined {
  if (der[0] !== 0x30) return undefined;
  const l = readLength(der, 1);
  if (!l || l[1] + l[0] !== der.length) return undefined;
  const out = new Uint8Array(2 * size);
  const afterR = readInteger(der, l[1], der.length, size, out, 0);
  if (afterR === undefined) return undefined;
  const afterS = readInteger(der, afterR, der.length, size, out, size);
  return afterS === der.length ? out : undefined;
}

function integer(v: Uint8Array): number[] {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const body = Array.from(v.subarray(i));
  if (body[0]! & 0x80) body.unshift(0);
  return [0x02, body.length, ...body];
}

/** r ‖ s (equal halves) to the DER ECDSA-Sig-Value. */
export function rawToDer(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = raw.length / 2;
  const content = [...integer(raw.subarray(0, half)), ...integer(raw.subarray(half))];
  const len = content.length < 0x80 ? [content.length] : [0x81, content.length];
  return new Uint8Array([0x30, ...len, ...content]);
}
