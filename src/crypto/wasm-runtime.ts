/**
 * Loads the constant-time WASM crypto core once, synchronously, at import time.
 *
 * The SIMD build is used when the runtime validates it, else the scalar build.
 * Inputs are copied into the core's scratch area and outputs copied out; the
 * byte view over memory is reused and only re-created after memory grows, so a
 * call costs no allocation besides its result.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AppError } from "../service/errors.ts";

/** Exports of the symmetric half (pointers and lengths are i32). */
export interface SymExports {
  memory: WebAssembly.Memory;
  scratch(size: number): number;
  sha2Digest(alg: number, data: number, len: number, out: number): void;
  hmacDigest(alg: number, key: number, keyLen: number, data: number, len: number, out: number): void;
  hkdfDerive(
    alg: number, ikm: number, ikmLen: number, salt: number, saltLen: number,
    info: number, infoLen: number, out: number, outLen: number,
  ): number;
  aesGcmSeal(
    key: number, keyLen: number, iv: number, ivLen: number, aad: number, aadLen: number,
    data: number, len: number, out: number,
  ): number;
  aesGcmOpen(
    key: number, keyLen: number, iv: number, ivLen: number, aad: number, aadLen: number,
    data: number, len: number, tag: number, out: number,
  ): number;
  aesGcmContextSize(): number;
  aesGcmPrepare(key: number, keyLen: number, ctx: number): number;
  aesGcmSealPrepared(ctx: number, iv: number, ivLen: number, aad: number, aadLen: number, data: number, len: number, out: number): number;
  aesGcmOpenPrepared(ctx: number, iv: number, ivLen: number, aad: number, aadLen: number, data: number, len: number, tag: number, out: number): number;
}

/** All exports: the symmetric ones typed, the elliptic-curve ones by name. */
export type CoreExports = SymExports & Record<string, unknown>;

function load(): { exports: CoreExports; variant: "simd" | "scalar" } {
  const read = (name: string): Uint8Array<ArrayBuffer> => {
    try {
      return new Uint8Array(readFileSync(fileURLToPath(new URL(`../../wasm/build/${name}`, import.meta.url).href)));
    } catch (cause) {
      throw new AppError("unavailable", `wasm core ${name} is not built (run: npm run build:wasm)`, { cause });
    }
  };
  let variant: "simd" | "scalar" = "scalar";
  let bytes: Uint8Array<ArrayBuffer> | undefined;
  try {
    const simd = read("core-simd.wasm");
    if (WebAssembly.validate(simd)) {
      bytes = simd;
      variant = "simd";
    }
  } catch {
    // fall back to the scalar build below
  }
  if (!bytes) bytes = read("core.wasm");
  const module = new WebAssembly.Module(bytes);
  const instance = new WebAssembly.Instance(module, {});
  return { exports: instance.exports as unknown as CoreExports, variant };
}

const core = load();
const ex = core.exports;
let view = new Uint8Array(ex.memory.buffer);
// Scratch base and the bytes known to fit above it, so small calls skip the export.
let base = ex.scratch(0);
let capacity = view.length - base;

/** The core's exports. */
export function wasmExports(): CoreExports {
  return ex;
}

/** Which build was loaded. */
export function wasmVariant(): "simd" | "scalar" {
  return core.variant;
}

/**
 * Reserves `size` bytes of scratch and returns its base offset; call `memoryView()`
 * after this (memory may have grown).
 */
export function scratch(size: number): number {
  // A view goes empty when memory grows (its buffer is detached), e.g. after
  // another module half called the scratch export itself.
  if (size <= capacity && view.byteLength !== 0) return base;
  // The core takes i32 sizes: anything larger cannot be laid out.
  if (!(size >= 0 && size <= 0x7fff0000)) throw new AppError("payload_too_large", "input too large for the wasm core");
  base = ex.scratch(size);
  if (base === 0) throw new AppError("payload_too_large", "input too large for the wasm core");
  if (view.buffer !== ex.memory.buffer) view = new Uint8Array(ex.memory.buffer);
  capacity = view.length - base;
  return base;
}

/** Byte view over the core's memory, valid until memory next grows. */
export function memoryView(): Uint8Array {
  // Growing memory detaches the old buffer, which empties the view.
  if (view.byteLength === 0) view = new Uint8Array(ex.memory.buffer);
  return view;
}

/** Copies `data` into memory at `at`. */
export function put(at: number, data: Uint8Array): void {
  memoryView().set(data, at);
}

/** Copies `len` bytes at `at` out of memory. */
export function take(at: number, len: number): Uint8Array {
  return memoryView().slice(at, at + len);
}

/** Zeroes `len` bytes at `at` (for key material left in scratch). */
export function wipe(at: number, len: number): void {
  memoryView().fill(0, at, at + len);
}
