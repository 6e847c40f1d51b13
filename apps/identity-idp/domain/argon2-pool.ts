/**
 * Argon2id on a pool of Web Workers: each derivation costs ~20 MiB and tens of milliseconds of
 * CPU, so running it on the event loop would stall every other request and use one core only.
 * Jobs go to the least busy worker; the workers do not keep the process alive.
 */
import { argon2id } from "hash-wasm";
import type { Argon2Params } from "./password.ts";

/** Derives an Argon2id hash; the pool and the in-thread fallback implement it. */
export interface Argon2Runner {
  derive(password: string, salt: Uint8Array, p: Argon2Params, length: number): Promise<Uint8Array>;
}

export const inThread: Argon2Runner = {
  derive: (password, salt, p, length) => argon2id({ password, salt, parallelism: p.p, iterations: p.t, memorySize: p.m, hashLength: length, outputType: "binary" }),
};

interface Slot {
  worker: Worker;
  busy: number;
}

export class Argon2Pool implements Argon2Runner {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(b: Uint8Array): void; reject(e: Error): void; slot: Slot }>();
  private next = 1;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./argon2-worker.ts", import.meta.url).href, { type: "module" });
      (worker as unknown as { unref?: () => void }).unref?.();
      const slot: Slot = { worker, busy: 0 };
      worker.onmessage = (e: MessageEvent<{ id: number; out?: Uint8Array; error?: string }>) => {
        const job = this.pending.get(e.data.id);
        if (!job) return;
        this.pending.delete(e.data.id);
        job.slot.busy--;
        if (e.data.out) job.resolve(e.data.out);
        else job.reject(new Error(`argon2id failed: ${e.data.error}`));
      };
      worker.onerror = (e) => {
        for (const [id, job] of this.pending) {
          if (job.slot !== slot) continue;
          this.pending.delete(id);
          job.reject(new Error(`argon2id worker failed: ${e.message}`));
        }
        slot.busy = 0;
      };
      this.slots.push(slot);
    }
  }

  private static readonly shared = new Map<number, Argon2Pool>();

  /**
   * The process-wide pool of `size` workers (services in one process share it), where the
   * runtime has Web Workers (Bun, Deno, browsers); else the calling thread.
   */
  static create(size: number): Argon2Runner {
    if (size <= 0 || typeof Worker === "undefined") return inThread;
    let pool = Argon2Pool.shared.get(size);
    if (!pool) Argon2Pool.shared.set(size, (pool = new Argon2Pool(size)));
    return pool;
  }

  derive(password: string, salt: Uint8Array, p: Argon2Params, length: number): Promise<Uint8Array> {
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.next++;
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot });
      slot.worker.postMessage({ id, password, salt, m: p.m, t: p.t, p: p.p, length });
    });
  }

  close(): void {
    for (const s of this.slots) s.worker.terminate();
    for (const job of this.pending.values()) job.reject(new Error("argon2id pool closed"));
    this.pending.clear();
  }
}
