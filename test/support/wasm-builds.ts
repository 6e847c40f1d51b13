/**
 * Test helper: both builds of the WASM core (scalar and SIMD), instantiated directly so a test
 * can check each one's exports. The scalar build must load; the SIMD build is left out (with
 * a printed reason) only on a runtime without wasm SIMD, and never under CI.
 */
import { readFileSync } from "node:fs";

export function wasmBuilds<T>(): Array<{ file: string; ex: T }> {
  return ["core.wasm", "core-simd.wasm"].flatMap((file) => {
    const bytes = readFileSync(new URL(`../../wasm/build/${file}`, import.meta.url));
    if (!WebAssembly.validate(bytes)) {
      if (file === "core.wasm" || process.env.CI === "true") throw new Error(`${file} does not validate on this runtime`);
      console.warn(`skipping ${file}: this runtime has no wasm SIMD`);
      return [];
    }
    return [{ file, ex: new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as T }];
  });
}
