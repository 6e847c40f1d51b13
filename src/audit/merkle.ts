/**
 * A Merkle tree in the shape of RFC 9162 (Certificate Transparency 2.0), section 2.1: the
 * leaf hash is SHA-256(0x00 || entry), an interior node SHA-256(0x01 || left || right), and a
 * tree of n leaves splits at the largest power of two below n. This file builds trees and
 * proves (inclusion paths, consistency proofs); `proofs.ts` verifies, written apart from this
 * prover after the RFC's own verification algorithms, so neither can hide the other's mistake.
 *
 * `MerkleTree` keeps every complete subtree hash in memory (about two hashes per leaf), so a
 * root or a proof costs O(log n) hashes whatever the size. It only grows: an audit log never
 * removes a leaf. Hashing is node:crypto's (native in Bun, Node and Deno): an append hashes
 * each entry and about one node, on the hot path of every event.
 */
import { createHash } from "node:crypto";

export const HASH_BYTES = 32;
const LEAF = new Uint8Array([0x00]);
const NODE = new Uint8Array([0x01]);

const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

/** SHA-256(0x00 || entry). */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(LEAF, entry);
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE, left, right);
}

/** The hash of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT = sha256();

/** The largest power of two strictly below n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

export class MerkleTree {
  /** levels[l][i]: the hash of the complete subtree of 2^l leaves starting at leaf i * 2^l. */
  private readonly levels: Uint8Array[][] = [[]];

  /** The number of leaves. */
  get size(): number {
    return this.levels[0]!.length;
  }

  /** The leaf hash at `index`. */
  leaf(index: number): Uint8Array {
    const h = this.levels[0]![index];
    if (!h) throw new RangeError(`no leaf ${index} in a tree of ${this.size}`);
    return h;
  }

  /** Appends a leaf by its hash (see `leafHash`). */
  push(hash: Uint8Array): void {
    this.levels[0]!.push(hash);
    // Each time a level gets an even count, its last two nodes complete one above.
    for (let l = 0; this.levels[l]!.length % 2 === 0; l++) {
      const level = this.levels[l]!;
      const parent = nodeHash(level[level.length - 2]!, level[level.length - 1]!);
      (this.levels[l + 1] ??= []).push(parent);
    }
  }

  /** MTH(D[lo:hi]) for 0 <= lo < hi <= size, in the RFC's recursion from `lo`. */
  private hash(lo: number, hi: number): Uint8Array {
    const n = hi - lo;
    // A complete subtree aligned on its own size is stored.
    const k = n === 1 ? 1 : splitPoint(n);
    if (n === 1 || k * 2 === n) {
      // n is a power of two: an aligned complete subtree is stored.
      if (lo % n === 0) {
        const stored = this.levels[Math.round(Math.log2(n))]?.[lo / n];
        if (stored) return stored;
      }
    }
    return nodeHash(this.hash(lo, lo + k), this.hash(lo + k, hi));
  }

  /** The root of the first `size` leaves (default all). */
  root(size = this.size): Uint8Array {
    this.checkSize(size);
    return size === 0 ? EMPTY_ROOT : this.hash(0, size);
  }

  /** RFC 9162 2.1.3.1: the inclusion path of leaf `index` in the tree of the first `size` leaves. */
  inclusionProof(index: number, size = this.size): Uint8Array[] {
    this.checkSize(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw new RangeError(`leaf ${index} is not in a tree of ${size}`);
    const path: Uint8Array[] = [];
    const walk = (m: number, lo: number, hi: number): void => {
      if (hi - lo === 1) return;
      const k = splitPoint(hi - lo);
      if (m < k) {
        walk(m, lo, lo + k);
        path.push(this.hash(lo + k, hi));
      } else {
        walk(m - k, lo + k, hi);
        path.push(this.hash(lo, lo + k));
      }
    };
    walk(index, 0, size);
    return path;
  }

  /** RFC 9162 2.1.4.1: the consistency proof between the trees of `first` and `second` leaves. */
  consistencyProof(first: number, second = this.size): Uint8Array[] {
    this.checkSize(second);
    if (!Number.isSafeInteger(first) || first < 1 || first > second) throw new RangeError(`no consistency proof from ${first} to ${second}`);
    const proof: Uint8Array[] = [];
    const sub = (m: number, lo: number, hi: number, whole: boolean): void => {
      const n = hi - lo;
      if (m === n) {
        if (!whole) proof.push(this.hash(lo, hi));
        return;
      }
      const k = splitPoint(n);
      if (m <= k) {
        sub(m, lo, lo + k, whole);
        proof.push(this.hash(lo + k, hi));
      } else {
        sub(m - k, lo + k, hi, false);
        proof.push(this.hash(lo, lo + k));
      }
    };
    sub(first, 0, second, true);
    return proof;
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) throw new RangeError(`tree size ${size} is beyond the ${this.size} leaves`);
  }
}
