/**
 * Replay nonces (RFC 8555 §6.5): random, single-use, held in memory for a while and bounded in
 * number (the oldest go first), so a flood of newNonce requests costs memory only up to the bound.
 * Per instance: several instances behind one name need sticky routing (a client that meets
 * another instance gets badNonce and retries with the fresh nonce it carries).
 */
const TTL_MS = 15 * 60_000;
const MAX_NONCES = 50_000;

export class NonceStore {
  private readonly live = new Map<string, number>();

  constructor(
    private readonly max = MAX_NONCES,
    private readonly ttlMs = TTL_MS,
  ) {}

  issue(): string {
    const n = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url");
    if (this.live.size >= this.max) this.live.delete(this.live.keys().next().value!);
    this.live.set(n, Date.now() + this.ttlMs);
    return n;
  }

  /** True once for a nonce this store issued and has not expired; false ever after. */
  consume(n: unknown): boolean {
    if (typeof n !== "string" || n.length > 64) return false;
    const expires = this.live.get(n);
    if (expires === undefined) return false;
    this.live.delete(n);
    return expires > Date.now();
  }

  get size(): number {
    return this.live.size;
  }
}
