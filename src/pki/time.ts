/**
 * Times in X.509-profile structures (certificates, CRLs, OCSP responses) carry whole seconds:
 * RFC 5280 §4.1.2.5.2 forbids fractional seconds in GeneralizedTime, and UTCTime has none.
 * Every such time the suite signs goes through `x509Time`; a JavaScript Date with milliseconds
 * would otherwise be encoded as `20261207004241.069Z`, which strict parsers (GnuTLS) refuse.
 * (RFC 3161 time-stamp tokens keep their accuracy: `genTime` may have fractions.)
 */

/** The time truncated to whole seconds (floor), as a Date. */
export function x509Time(t: Date | number): Date {
  const ms = typeof t === "number" ? t : t.getTime();
  return new Date(Math.floor(ms / 1000) * 1000);
}
