/**
 * Web Worker body of the RA's decryption threads (rsa-pool.ts): holds one RSA private key, sent
 * first as PKCS#8 (zeroed once imported), and answers each ciphertext with the raw RSA result
 * (no padding removed: the caller checks PKCS#1 v1.5 in constant shape), each `sign` with a
 * PKCS#1 v1.5 SHA-256 signature, or nothing when the RSA operation itself fails.
 */
import { constants, createPrivateKey, privateDecrypt, sign, type KeyObject } from "node:crypto";

type Message = { pkcs8: Uint8Array } | { id: number; data: Uint8Array; sign?: boolean };

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<Message>) => void) | null; postMessage(msg: unknown, transfer?: Transferable[]): void };
let key: KeyObject | undefined;

scope.onmessage = (e) => {
  const m = e.data;
  if ("pkcs8" in m) {
    key = createPrivateKey({ key: Buffer.from(m.pkcs8), format: "der", type: "pkcs8" });
    m.pkcs8.fill(0);
    return;
  }
  try {
    const out = new Uint8Array(m.sign ? sign("sha256", m.data, key!) : privateDecrypt({ key: key!, padding: constants.RSA_NO_PADDING }, m.data));
    scope.postMessage({ id: m.id, out }, [out.buffer as ArrayBuffer]);
  } catch {
    scope.postMessage({ id: m.id });
  }
};
