/**
 * Constant-time equality for secrets (tokens, MACs, hashes of secrets).
 *
 * Guarantee: the time taken depends only on the lengths of the inputs, never on where they
 * first differ. The loop runs over the longer input and the length difference is folded
 * into the result, so an early return on unequal length leaks nothing that the caller does
 * not already reveal (secret lengths here are fixed by format).
 */
const enc = new TextEncoder();

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

export function equalStrings(a: string, b: string): boolean {
  return equalBytes(enc.encode(a), enc.encode(b));
}
