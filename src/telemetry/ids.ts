/**
 * Random trace ids (16 bytes) and span ids (8 bytes) as lowercase hex, W3C Trace Context's
 * form. Bytes come from the runtime's CSPRNG a page at a time, so a span costs a slice of a
 * buffer instead of a `getRandomValues` call. The ids identify, they protect nothing.
 */
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let used = POOL_BYTES;

function hexOfRandom(bytes: number): string {
  for (;;) {
    if (used + bytes > POOL_BYTES) {
      crypto.getRandomValues(pool);
      used = 0;
    }
    let out = "";
    let zero = true;
    for (let i = 0; i < bytes; i++) {
      const b = pool[used + i]!;
      if (b !== 0) zero = false;
      out += HEX[b];
    }
    used += bytes;
    // All zeros is the invalid id of W3C Trace Context: draw again.
    if (!zero) return out;
  }
}

/** A new 32-hex-digit trace id, never all zeros. */
export const newTraceId = (): string => hexOfRandom(16);

/** A new 16-hex-digit span id, never all zeros. */
export const newSpanId = (): string => hexOfRandom(8);
