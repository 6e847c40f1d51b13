/**
 * The edge's copy of what the origin serves: one answer per key, fetched on a miss, fetched
 * again once older than the refresh interval, and kept (stale) while the origin cannot be
 * reached, because every object cached here (OCSP responses, CRLs, certificates, JWKS) is
 * either signed or only public keys, and says itself how long it is valid. Concurrent misses
 * for one key share one origin call. Per isolate, bounded.
 */
export interface CachedAnswer {
  status: number;
  contentType: string;
  body: Uint8Array<ArrayBuffer>;
  /** When it was fetched from the origin (ms). */
  fetchedAt: number;
}

const MAX_ENTRIES = 10_000;

export class EdgeCache {
  private readonly entries = new Map<string, CachedAnswer>();
  private readonly inflight = new Map<string, Promise<CachedAnswer>>();

  constructor(
    private readonly refreshMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The answer for `key`: cached while fresh, else from `load` (the origin), else the stale
   * copy. `keep` says which answers are worth repeating (default: all but the origin's 5xx).
   */
  async get(key: string, load: () => Promise<CachedAnswer>, keep: (a: CachedAnswer) => boolean = (a) => a.status < 500): Promise<CachedAnswer> {
    const hit = this.entries.get(key);
    if (hit && this.now() - hit.fetchedAt < this.refreshMs) return hit;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = load().finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    try {
      const fresh = await pending;
      // Only answers worth repeating are kept; the others (a 5xx of the origin) are passed on.
      if (keep(fresh)) {
        if (this.entries.size >= MAX_ENTRIES && !this.entries.has(key)) this.entries.delete(this.entries.keys().next().value!);
        this.entries.set(key, fresh);
      }
      return fresh.status >= 500 && hit ? hit : fresh;
    } catch (e) {
      if (hit) return hit;
      throw e;
    }
  }

  /** Seconds the answer stays fresh here, for the client's Cache-Control. */
  maxAge(a: CachedAnswer): number {
    return Math.max(0, Math.floor((this.refreshMs - (this.now() - a.fetchedAt)) / 1000));
  }
}

/** Fetches `path` from the origin binding as a cacheable answer. */
export async function fromOrigin(origin: Fetcher, path: string, init?: RequestInit): Promise<CachedAnswer> {
  const res = await origin.fetch(`http://origin${path}`, init);
  return {
    status: res.status,
    contentType: res.headers.get("content-type") ?? "application/octet-stream",
    body: new Uint8Array(await res.arrayBuffer()),
    fetchedAt: Date.now(),
  };
}

/** The cached answer as a Response. */
export function answer(cache: EdgeCache, a: CachedAnswer, extra: Record<string, string> = {}): Response {
  const headers: Record<string, string> = { "content-type": a.contentType, ...extra };
  headers["cache-control"] = a.status === 200 ? `public, max-age=${cache.maxAge(a)}` : "no-store";
  return new Response(a.body, { status: a.status, headers });
}

/** The one JSON error body of the suite (`{ error: { code, message } }`). */
export function edgeError(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ error: { code, message } }), { status, headers: { "content-type": "application/json" } });
}

/** A service binding or the global fetch: what the handlers call the origin through. */
export interface Fetcher {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}

/** The refresh interval from the environment (seconds, default 60). */
export function refreshMsOf(env: { REFRESH_S?: string }): number {
  const s = Number(env.REFRESH_S ?? 60);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 60_000;
}
