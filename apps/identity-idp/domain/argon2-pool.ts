/**
 * Argon2id on a pool of Web Workers: each derivation costs ~20 MiB and tens of milliseconds of
 * CPU, so running it on the event loop would stall every other request and use one core only.
 * Jobs go to the least busy worker; the workers do not keep the process alive. Workers start
 * on demand (up to the pool's size) and a worker idle for `idleMs` ends, so an idle service
 * holds neither the threads nor their ~20 MiB of Argon2 memory each.
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
  idle?: ReturnType<typeof setTimeout>;
}

export class Argon2Pool implements Argon2Runner {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(b: Uint8Array): void; reject(e: Error): void; slot: Slot }>();
  private next = 1;

  constructor(
    private readonly size: number,
    private readonly idleMs = 30_000,
  ) {}

  private startWorker(): Slot {
    const worker = new Worker(new URL("./argon2-worker.ts", import.meta.url).href, { type: "module" });
    (worker as unknown as { unref?: () => void }).unref?.();
    const slot: Slot = { worker, busy: 0 };
    worker.onmessage = (e: MessageEvent<{ id: number; out?: Uint8Array; error?: string }>) => {
      const job = this.pending.get(e.data.id);
      if (!job) return;
      this.pending.delete(e.data.id);
      this.done(job.slot);
      if (e.data.out) job.resolve(e.data.out);
      else job.reject(new Error(`argon2id failed: ${e.data.error}`));
    };
    worker.onerror = (e) => {
      for (const [id, job] of this.pending) {
        if (job.slot !== slot) continue;
        this.pending.delete(id);
        job.reject(new Error(`argon2id worker failed: ${e.message}`));
      }
      // A failed worker is not reused: the next job starts a fresh one.
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      clearTimeout(slot.idle);
      worker.terminate();
    };
    this.slots.push(slot);
    return slot;
  }

  /** A job of `slot` ended; a worker left with nothing to do ends after idleMs. */
  private done(slot: Slot): void {
    slot.busy--;
    if (slot.busy > 0) return;
    slot.idle = setTimeout(() => {
      const i = this.slots.indexOf(slot);
      if (slot.busy > 0 || i < 0) return;
      this.slots.splice(i, 1);
      slot.worker.terminate();
    }, this.idleMs);
    (slot.idle as { unref?: () => void }).unref?.();
  }

  /** The least busy worker, or a new one while the pool has room and every worker is busy. */
  private pick(): Slot {
    const least = this.slots.reduce<Slot | undefined>((a, b) => (!a || b.busy < a.busy ? b : a), undefined);
    return least && (least.busy === 0 || this.slots.length >= this.size) ? least : this.startWorker();
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
    const slot = this.pick();
    clearTimeout(slot.idle);
    const id = this.next++;
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot });
      slot.worker.postMessage({ id, password, salt, m: p.m, t: p.t, p: p.p, length });
    });
  }

  close(): void {
    for (const s of this.slots.splice(0)) {
      clearTimeout(s.idle);
      s.worker.terminate();
    }
    for (const job of this.pending.values()) job.reject(new Error("argon2id pool closed"));
    this.pending.clear();
  }
}
