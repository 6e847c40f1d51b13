/**
 * Crypto spans: `crypto <operation>` children of the request's span for each call through
 * the dispatcher, with the provider chosen, the algorithm (AES-256-GCM, ECDSA P-256
 * SHA-256, ...) and where the key lives (`raw` in memory or `token` in an HSM). Never a key,
 * an IV, an input or an output: only names the dispatcher routes by.
 */
import { SpanKind, type Tracer } from "../telemetry/index.ts";
import type { CryptoOp, CryptoProvider, KeyHandle, OpParams } from "./provider.ts";

function algorithmOf(op: CryptoOp, p: OpParams): string | undefined {
  switch (op) {
    case "aesGcmEncrypt":
    case "aesGcmDecrypt":
      return p.keyBits ? `AES-${p.keyBits}-GCM` : "AES-GCM";
    case "sign":
    case "verify":
      return `ECDSA ${p.curve ?? "?"} ${p.hash ?? "?"}`;
    case "ecdh":
      return `ECDH ${p.curve ?? "?"}`;
    case "generateEcKeyPair":
      return `EC ${p.curve ?? "?"}`;
    case "generateAesKey":
    case "wrapKey":
    case "unwrapKey":
      return p.keyBits ? `AES-${p.keyBits}` : "AES";
    case "digest":
      return p.hash;
    case "hmac":
      return `HMAC ${p.hash ?? "?"}`;
  }
}

export type Call = <T>(op: CryptoOp, params: OpParams, keys: readonly (KeyHandle | undefined)[], run: (provider: CryptoProvider) => Promise<T>) => Promise<T>;

/** The dispatcher's call step with a span around it: `route` picks the provider, `run` calls it. */
export function tracedCall(tracer: Tracer, route: (op: CryptoOp, params: OpParams, keys: readonly (KeyHandle | undefined)[]) => CryptoProvider): Call {
  return async (op, params, keys, run) => {
    const span = tracer.startChild(`crypto ${op}`, SpanKind.INTERNAL, {
      "crypto.operation": op,
      "crypto.algorithm": algorithmOf(op, params),
      "crypto.key.location": params.location ?? keys.find((k) => k && typeof k === "object")?.location,
    });
    if (!span) return run(route(op, params, keys));
    try {
      const provider = route(op, params, keys);
      span.setAttribute("crypto.provider", provider.name);
      return await run(provider);
    } catch (e) {
      span.recordError(e);
      throw e;
    } finally {
      span.end();
    }
  };
}
