/**
 * cryptoutil's crypto layer: one provider interface (`provider.ts`) over the constant-time
 * wasm core, the runtime's WebCrypto and a PKCS#11 HSM, and a dispatcher that picks one per
 * call. Importing this module never loads a native addon: pkcs11js is loaded only when an HSM
 * is configured.
 *
 * @example
 *   const crypto = await createCrypto({ pkcs11: { tokenLabel: "cryptoutil", pinFile: "/run/secrets/hsm_pin" } });
 *   const root = await crypto.generateAesKey(256, { location: "token", label: "barrier-root" });
 */
export * from "./provider.ts";
export { WebCryptoProvider, createWebCryptoProvider } from "./webcrypto.ts";
export { WasmProvider, createWasmProvider } from "./wasm-provider.ts";
export {
  type Crossover,
  type CrossoverTable,
  type Dispatcher,
  type DispatcherOptions,
  MEASURED_CROSSOVERS,
  createDispatcher,
} from "./dispatcher.ts";
export { type Pkcs11Config, type Pkcs11StartFailure, DEFAULT_PKCS11_MODULE, Pkcs11Provider, openPkcs11Provider } from "./pkcs11/index.ts";

import { type CrossoverTable, type Dispatcher, createDispatcher } from "./dispatcher.ts";
import type { Pkcs11Config } from "./pkcs11/index.ts";
import { openPkcs11Provider } from "./pkcs11/index.ts";
import type { CryptoProvider } from "./provider.ts";
import { createWasmProvider } from "./wasm-provider.ts";
import { createWebCryptoProvider } from "./webcrypto.ts";

/**
 * The standard set-up: wasm and WebCrypto always, the HSM when `pkcs11` is configured (opened
 * now, so a bad module, token or PIN stops the start), behind one dispatcher.
 */
export async function createCrypto(opts: { pkcs11?: Pkcs11Config; crossovers?: CrossoverTable } = {}): Promise<Dispatcher> {
  const providers: CryptoProvider[] = [createWasmProvider(), createWebCryptoProvider()];
  if (opts.pkcs11) providers.push(await openPkcs11Provider(opts.pkcs11));
  return createDispatcher({ providers, crossovers: opts.crossovers });
}
