/**
 * Canonical JSON for encryption contexts: object keys sorted by UTF-16 code units at every
 * level, no whitespace, so the same context always yields the same bytes (RFC 8785's key
 * order; numbers are the caller's JSON numbers as JavaScript prints them).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new TypeError("non-finite number");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
}
