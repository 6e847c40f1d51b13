/**
 * Certificate serial numbers (RFC 5280 §4.1.2.2).
 *
 * Guarantees: 16 bytes from the WebCrypto CSPRNG, top bit cleared so the DER
 * INTEGER is positive, first byte non-zero so the encoding is minimal (and the
 * value non-zero); 127 random bits minus one bit for the non-zero first byte.
 */

/** A fresh random serial number as lowercase hex (32 digits). */
export function randomSerialHex(): string {
  const bytes = new Uint8Array(16);
  // Redraw when the first byte is zero: a leading zero byte would make the DER non-minimal.
  do {
    crypto.getRandomValues(bytes);
    bytes[0] = bytes[0]! & 0x7f;
  } while (bytes[0] === 0);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
