/**
 * Opaque page tokens for keyset pagination over a per-tenant sequence column: the token
 * carries the last sequence number seen. Queries stay tenant-scoped, so a token moved to
 * another tenant only pages that tenant's rows.
 */
import { AppError } from "../service/errors.ts";

export function encodePageToken(seq: number): string {
  return btoa(JSON.stringify({ s: seq })).replace(/=+$/, "");
}

/** The sequence number in a page token; `validation_failed` for anything else. */
export function decodePageToken(token: string): number {
  try {
    const { s } = JSON.parse(atob(token)) as { s: unknown };
    if (typeof s === "number" && Number.isSafeInteger(s) && s >= 0) return s;
  } catch {
    // fall through to the error below
  }
  throw new AppError("validation_failed", "page_token is not valid");
}
