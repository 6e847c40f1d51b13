/**
 * The hot signing path of access tokens: compact ES256 JWS built directly, signed
 * with a node:crypto KeyObject (synchronous, about twice as fast as WebCrypto's
 * ECDSA in Bun and no per-request key import). The KeyObject is made once from the
 * decrypted JWK when the tenant's keys load. Runtime-specific on purpose: Bun,
 * Node and Deno all provide node:crypto. Verification stays with jose.
 */
import { Buffer } from "node:buffer";
import { createPrivateKey, sign, type KeyObject } from "node:crypto";
import type { JWK } from "jose";

export interface CompactSigner {
  kid: string;
  /** Signs `payload` with header `{alg: ES256, typ, kid}`. */
  sign(typ: string, payload: Record<string, unknown>): string;
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64url");

export function es256CompactSigner(privateJwk: JWK, kid: string): CompactSigner {
  const key: KeyObject = createPrivateKey({ key: privateJwk as never, format: "jwk" });
  const headers = new Map<string, string>();
  return {
    kid,
    sign(typ, payload) {
      let h = headers.get(typ);
      if (!h) {
        h = b64(JSON.stringify({ alg: "ES256", typ, kid }));
        headers.set(typ, h);
      }
      const input = `${h}.${b64(JSON.stringify(payload))}`;
      const sig = sign("sha256", Buffer.from(input, "utf8"), { key, dsaEncoding: "ieee-p1363" });
      return `${input}.${sig.toString("base64url")}`;
    },
  };
}
