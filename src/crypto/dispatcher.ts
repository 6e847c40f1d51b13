/**
 * The crypto dispatcher: one `CryptoProvider`-shaped object that sends each call to the
 * right provider.
 *
 * Rules, in order:
 * 1. A call involving a key that lives in a token goes to the provider of that token, and
 *    nowhere else: an HSM key never reaches another provider (no fallback, even on error).
 * 2. Key generation with `location: "token"` goes to the first HSM provider.
 * 3. Anything else goes to an in-memory provider that is constant time for the operation and
 *    supports its parameters; between several, the crossover table picks by input size.
 *    HSM providers are never chosen for in-memory work (they are slower and would hold a copy).
 */
import { AppError } from "../service/errors.ts";
import type {
  AesBits,
  CryptoOp,
  CryptoProvider,
  EcCurve,
  EcKeyPair,
  HashAlg,
  KeyGenOptions,
  KeyHandle,
  OpParams,
  ProviderName,
} from "./provider.ts";
import { tracedCall, type Call } from "./tracing.ts";
import type { Tracer } from "../telemetry/index.ts";

/**
 * Per operation: which provider is faster below `bytes` of input, and which at or above it.
 * `prefer` alone names the faster provider at every size.
 */
export type Crossover = { below: ProviderName; atOrAbove: ProviderName; bytes: number } | { prefer: ProviderName };
export type CrossoverTable = Partial<Record<CryptoOp, Crossover>>;

/**
 * Measured with `npx bun bench/crypto-crossover.ts` (wasm SIMD build vs Bun 1.4 WebCrypto, both
 * through their providers, 2 shared cores, Linux x64). The bench interpolates the size where
 * WebCrypto's per-call overhead stops dominating. With the faster AES rounds, two runs on a
 * quiet machine gave AES-GCM 7.1-8.0 KiB, HMAC-SHA-256 7.8-9.4 KiB, SHA-256 8.2-9.1 KiB; the
 * values below sit at the low end (a loaded machine slows WebCrypto's calls more than the
 * wasm, which moves the crossover up). Rerun it on other hardware or runtimes and pass the
 * result as `crossovers`.
 */
export const MEASURED_CROSSOVERS: CrossoverTable = {
  aesGcmEncrypt: { below: "wasm", atOrAbove: "webcrypto", bytes: 7168 },
  aesGcmDecrypt: { below: "wasm", atOrAbove: "webcrypto", bytes: 7168 },
  digest: { below: "wasm", atOrAbove: "webcrypto", bytes: 8192 },
  hmac: { below: "wasm", atOrAbove: "webcrypto", bytes: 7680 },
  // Same bench, size-independent part: WebCrypto verifies and derives 2-3x faster on both
  // curves; with the safegcd inversions and the 6-bit comb the wasm core signs P-256 about
  // 1.3x faster than WebCrypto through its provider (P-384 signing is a tie).
  sign: { prefer: "wasm" },
  verify: { prefer: "webcrypto" },
  ecdh: { prefer: "webcrypto" },
  generateEcKeyPair: { prefer: "webcrypto" },
};

export interface DispatcherOptions {
  /** Providers in order of preference when the table does not decide. */
  providers: CryptoProvider[];
  crossovers?: CrossoverTable;
  /** With a tracer, each call is a `crypto <op>` span of the request it serves (tracing.ts). */
  tracer?: Tracer;
}

export interface Dispatcher extends Omit<CryptoProvider, "name"> {
  readonly name: "dispatcher";
  readonly providers: readonly CryptoProvider[];
  /** The provider a call with these parameters and keys goes to (throws when there is none). */
  route(op: CryptoOp, params?: OpParams, keys?: readonly (KeyHandle | undefined)[]): CryptoProvider;
}

const keyBitsOf = (k: KeyHandle | undefined): number | undefined => {
  if (!k || typeof k !== "object") return undefined;
  if (k.location === "raw") return k.type === "aes" ? k.material.length * 8 : undefined;
  return k.bits;
};

/**
 * @example
 *   const crypto = createDispatcher({ providers: [createWasmProvider(), createWebCryptoProvider(), hsm] });
 *   const ct = await crypto.aesGcmEncrypt(key, iv, data); // wasm, webcrypto or the HSM, by key and size
 */
export function createDispatcher(opts: DispatcherOptions): Dispatcher {
  const providers = [...opts.providers];
  if (providers.length === 0) throw new AppError("internal", "the crypto dispatcher needs at least one provider");
  const table = opts.crossovers ?? MEASURED_CROSSOVERS;

  function route(op: CryptoOp, params: OpParams = {}, keys: readonly (KeyHandle | undefined)[] = []): CryptoProvider {
    const tokenKey = keys.find((k) => k && typeof k === "object" && k.location === "token");
    if (tokenKey && tokenKey.location === "token") {
      const owner = providers.find(
        (p) => p.name === tokenKey.provider && (p as { token?: string }).token === tokenKey.token,
      );
      if (!owner) throw new AppError("unavailable", `no provider for token '${tokenKey.token}' is configured`);
      return owner;
    }
    if (params.location === "token") {
      const hsm = providers.find((p) => p.name === "pkcs11" && p.supports(op, params));
      if (!hsm) throw new AppError("unavailable", `no HSM provider can ${op}`);
      return hsm;
    }
    const candidates = providers.filter((p) => p.name !== "pkcs11" && p.constantTime(op) && p.supports(op, params));
    if (candidates.length === 0) throw new AppError("unavailable", `no constant-time provider supports ${op} with these parameters`);
    const c = table[op];
    if (c) {
      const want = "prefer" in c ? c.prefer : (params.size ?? 0) < c.bytes ? c.below : c.atOrAbove;
      const chosen = candidates.find((p) => p.name === want);
      if (chosen) return chosen;
    }
    return candidates[0] as CryptoProvider;
  }

  // Every method is async so that a routing refusal is a rejected promise, like any other failure.
  const call: Call = opts.tracer ? tracedCall(opts.tracer, route) : async (op, params, keys, run) => run(route(op, params, keys));
  const d: Dispatcher = {
    name: "dispatcher",
    providers,
    route,
    constantTime: (op) => providers.some((p) => p.name !== "pkcs11" && p.constantTime(op)),
    supports: (op, params) => providers.some((p) => p.supports(op, params)),
    aesGcmEncrypt: (key, iv, data, aad) =>
      call("aesGcmEncrypt", { keyBits: keyBitsOf(key), size: data?.length }, [key], (p) => p.aesGcmEncrypt(key, iv, data, aad)),
    aesGcmDecrypt: (key, iv, data, aad) =>
      call("aesGcmDecrypt", { keyBits: keyBitsOf(key), size: data?.length }, [key], (p) => p.aesGcmDecrypt(key, iv, data, aad)),
    sign: (key, hash: HashAlg, data) => call("sign", { curve: key?.curve, hash, size: data?.length }, [key], (p) => p.sign(key, hash, data)),
    verify: (key, hash: HashAlg, data, sig) => call("verify", { curve: key?.curve, hash, size: data?.length }, [key], (p) => p.verify(key, hash, data, sig)),
    ecdh: (key, peer, as?: { type: "aes"; bits: AesBits }) => call("ecdh", { curve: key?.curve }, [key], (p) => p.ecdh(key, peer, as)),
    generateAesKey: (bits: AesBits, o?: KeyGenOptions) => call("generateAesKey", { keyBits: bits, location: o?.location }, [], (p) => p.generateAesKey(bits, o)),
    generateEcKeyPair: (curve: EcCurve, o?: KeyGenOptions): Promise<EcKeyPair> =>
      call("generateEcKeyPair", { curve, location: o?.location }, [], (p) => p.generateEcKeyPair(curve, o)),
    wrapKey: (w, k) => call("wrapKey", { keyBits: keyBitsOf(w) }, [w, k], (p) => p.wrapKey(w, k)),
    unwrapKey: (w, wrapped, as, o) => call("unwrapKey", { keyBits: keyBitsOf(w), location: o?.location }, [w], (p) => p.unwrapKey(w, wrapped, as, o)),
    digest: (hash, data) => call("digest", { hash, size: data?.length }, [], (p) => p.digest(hash, data)),
    hmac: (hash, key, data) => call("hmac", { hash, size: data?.length }, [key], (p) => p.hmac(hash, key, data)),
    close: async () => {
      await Promise.all(providers.map((p) => p.close()));
    },
  };
  return d;
}
