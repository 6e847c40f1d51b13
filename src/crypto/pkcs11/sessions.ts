/**
 * A small pool of logged-in PKCS#11 sessions.
 *
 * A session runs one cryptographic operation at a time (Init, then the call), so each
 * operation takes a session for its whole duration; the long calls use pkcs11js's *Async
 * variants, which run on the thread pool instead of blocking the event loop.
 */
import type { Handle } from "pkcs11js";
import { AppError } from "../../service/errors.ts";

export class SessionPool {
  private readonly free: Handle[];
  private readonly waiters: ((s: Handle) => void)[] = [];
  private closed = false;
  private busy = 0;
  private drained?: () => void;

  constructor(readonly all: readonly Handle[]) {
    this.free = [...all];
  }

  /** Runs `fn` with exclusive use of one session. */
  async use<T>(fn: (session: Handle) => T | Promise<T>): Promise<T> {
    if (this.closed) throw new AppError("unavailable", "the PKCS#11 provider is closed");
    const session = this.free.pop() ?? (await new Promise<Handle>((resolve) => this.waiters.push(resolve)));
    this.busy++;
    try {
      return await fn(session);
    } finally {
      this.busy--;
      const next = this.waiters.shift();
      if (next) next(session);
      else this.free.push(session);
      if (this.busy === 0 && this.drained) this.drained();
    }
  }

  /** Stops new work and resolves when running operations have finished. */
  async drain(): Promise<void> {
    this.closed = true;
    if (this.busy > 0) await new Promise<void>((resolve) => (this.drained = resolve));
  }
}
