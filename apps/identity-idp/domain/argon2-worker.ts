/** Web Worker body of the Argon2id pool: one derivation per message, answered with its id. */
import { argon2id } from "hash-wasm";

interface Job {
  id: number;
  password: string;
  salt: Uint8Array;
  m: number;
  t: number;
  p: number;
  length: number;
}

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<Job>) => void) | null; postMessage(msg: unknown, transfer?: Transferable[]): void };

scope.onmessage = async (e) => {
  const j = e.data;
  try {
    const out = await argon2id({ password: j.password, salt: j.salt, parallelism: j.p, iterations: j.t, memorySize: j.m, hashLength: j.length, outputType: "binary" });
    scope.postMessage({ id: j.id, out }, [out.buffer as ArrayBuffer]);
  } catch (err) {
    scope.postMessage({ id: j.id, error: err instanceof Error ? err.message : String(err) });
  }
};
