/**
 * The RA's RSA private-key operations (opening each request's envelope; signing each CertRep
 * when the RSA key signs too) on worker threads: node:crypto's privateDecrypt is synchronous,
 * about 1-2 ms for RSA-3072 (0.3 ms for RSA-2048), and on the event loop it caps a service at one
 * core's worth of SCEP answers. Any key size: the workers take whatever PKCS#8 they are given. Each worker holds its own copy of the
 * key (sent once as PKCS#8, never kept here); calls go to the least busy one; the workers do
 * not keep the process alive and end with `close()` (at seal and stop, with the CA). Without
 * Web Workers, or with one core, the call runs on the calling thread.
 */
import { availableParallelism } from "node:os";
import { constants, privateDecrypt, sign, type KeyObject } from "node:crypto";

/** Raw RSA decryption (no padding removed): the result, or undefined when the operation fails. */
export type RawRsaDecrypt = (data: Uint8Array) => Promise<Uint8Array | undefined>;
/** An RSASSA-PKCS1-v1_5 SHA-256 signature of `data`. */
export type RsaSign = (data: Uint8Array) => Promise<Uint8Array>;

/**
 * Workers an RA gets: one per core, at most 3. On 2 cores, two workers answered 620-670 SCEP
 * requests/s where one (every core but the event loop's) answered 355-473 (npm run bench -- enroll).
 */
export const RSA_THREADS = Math.min(3, Math.max(0, (typeof availableParallelism === "function" ? availableParallelism() : 1)));

/** The calling thread's raw RSA decryption (or, with `sign`, signature) with `key`. */
export function inThreadRsa(key: KeyObject, op: "decrypt" | "sign" = "decrypt"): RawRsaDecrypt {
  return async (data) => {
    try {
      return new Uint8Array(op === "sign" ? sign("sha256", data, key) : privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, data));
    } catch {
      return undefined;
    }
  };
}

interface Slot {
  worker: Worker;
  busy: number;
}

export class RsaPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve(b: Promise<Uint8Array | undefined> | Uint8Array | undefined): void; slot: Slot; data: Uint8Array; sign: boolean }>();
  private next = 1;
  private closed = false;

  /** `pkcs8` is copied to each worker; the caller zeroes its own copy. */
  private constructor(
    pkcs8: Uint8Array,
    size: number,
    /** Where a call goes when its worker failed: the calling thread. */
    private readonly fallback: { decrypt: RawRsaDecrypt; sign: RawRsaDecrypt },
  ) {
    for (let i = 0; i < size; i++) this.slots.push(this.start(pkcs8));
  }

  /** A pool of `size` workers for the key, or the calling thread when there are none to have. */
  static create(pkcs8: Uint8Array, key: KeyObject, size = RSA_THREADS): { decrypt: RawRsaDecrypt; sign: RsaSign; close(): void } {
    const inThread = { decrypt: inThreadRsa(key), sign: inThreadRsa(key, "sign") };
    const pool = size > 0 && typeof Worker !== "undefined" ? new RsaPool(pkcs8, size, inThread) : undefined;
    const signed = async (data: Uint8Array) => {
      const s = await (pool ? pool.run(data, true) : inThread.sign(data));
      if (!s) throw new Error("the RA's RSA key did not sign");
      return s;
    };
    return { decrypt: pool ? (data) => pool.run(data, false) : inThread.decrypt, sign: signed, close: () => pool?.close() };
  }

  private start(pkcs8: Uint8Array): Slot {
    const worker = new Worker(new URL("./rsa-worker.ts", import.meta.url).href, { type: "module" });
    (worker as unknown as { unref?: () => void }).unref?.();
    const slot: Slot = { worker, busy: 0 };
    worker.postMessage({ pkcs8: pkcs8.slice() });
    worker.onmessage = (e: MessageEvent<{ id: number; out?: Uint8Array }>) => {
      const job = this.pending.get(e.data.id);
      if (!job) return;
      this.pending.delete(e.data.id);
      slot.busy--;
      job.resolve(e.data.out);
    };
    worker.onerror = () => {
      // A failed worker is dropped; what it had in hand, and later calls if none is left, run here.
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      worker.terminate();
      for (const [id, job] of this.pending) {
        if (job.slot !== slot) continue;
        this.pending.delete(id);
        job.resolve(this.inThread(job));
      }
    };
    return slot;
  }

  private inThread(job: { data: Uint8Array; sign: boolean }): Promise<Uint8Array | undefined> {
    return (job.sign ? this.fallback.sign : this.fallback.decrypt)(job.data);
  }

  /** A raw decryption, or with `sign` a signature, on the least busy worker. */
  run(data: Uint8Array, sign: boolean): Promise<Uint8Array | undefined> {
    const slot = this.slots.reduce<Slot | undefined>((a, b) => (!a || b.busy < a.busy ? b : a), undefined);
    if (!slot || this.closed) return this.inThread({ data, sign });
    const id = this.next++;
    slot.busy++;
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, slot, data, sign });
      slot.worker.postMessage({ id, data, sign });
    });
  }

  close(): void {
    this.closed = true;
    for (const s of this.slots.splice(0)) s.worker.terminate();
    for (const job of this.pending.values()) job.resolve(this.inThread(job));
    this.pending.clear();
  }
}
