// The page's ML-KEM-768 (FIPS 203), bundled from @noble/post-quantum by scripts/build-pages.mjs
// into build/ml-kem.js and loaded before im.js. WebCrypto has no ML-KEM yet, so this is script.
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";

globalThis.SmImKem = Object.freeze({
  keygen: () => ml_kem768.keygen(),
  encapsulate: (publicKey) => ml_kem768.encapsulate(publicKey),
  decapsulate: (cipherText, secretKey) => ml_kem768.decapsulate(cipherText, secretKey),
});
