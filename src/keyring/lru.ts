/** A small bounded LRU map (insertion order of `Map` gives recency). */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {
    if (!(max >= 1)) throw new RangeError("Lru: max must be >= 1");
  }

  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }

  delete(k: K): void {
    this.map.delete(k);
  }

  /** Drops every entry whose key starts with `prefix` (string keys only). */
  deletePrefix(prefix: string): void {
    for (const k of [...this.map.keys()]) if (typeof k === "string" && k.startsWith(prefix)) this.map.delete(k);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
