/**
 * The shared mutation-fuzz harness: a replayable PRNG, mutators for DER and for JSON (including
 * nesting and array bombs), and a runner that sends each case with bounded concurrency and
 * fails on any 5xx or any answer slower than a bound. Point it at any endpoint with a `send`.
 */
import { expect } from "bun:test";

export type Rng = (n: number) => number;

/** A small deterministic PRNG (xorshift32) so a failing seed can be replayed. */
export function rng(seed: number): Rng {
  let s = seed >>> 0 || 1;
  return (n: number) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

/** One to four DER mutations: bit flips, byte sets (favouring DER length/tag values), inserts, deletes, truncation, duplication. */
export function mutateDer(input: Uint8Array, r: Rng): Uint8Array {
  let b = Array.from(input);
  const rounds = 1 + r(4);
  const special = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, 0x30, 0x02, 0x03, 0x04, 0x05, 0x06, 0xa0, 0xa1];
  for (let k = 0; k < rounds && b.length > 0; k++) {
    const i = r(b.length);
    switch (r(7)) {
      case 0: b[i] = b[i]! ^ (1 << r(8)); break;
      case 1: b[i] = special[r(special.length)]!; break;
      case 2: b.splice(i, 0, r(256)); break;
      case 3: b.splice(i, 1 + r(4)); break;
      case 4: b = b.slice(0, i); break;
      case 5: b.splice(i, 0, ...b.slice(r(b.length), r(b.length) + 1 + r(16))); break;
      default: b[i] = r(256);
    }
  }
  return new Uint8Array(b);
}

/** One to four text mutations: a printable character replaced, or up to eight removed. */
export function mutateText(input: string, r: Rng): string {
  const b = [...input];
  for (let k = 0; k < 1 + r(4); k++) {
    const i = r(b.length);
    if (r(2)) b[i] = String.fromCharCode(32 + r(95));
    else b.splice(i, 1 + r(8));
  }
  return b.join("");
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** About the services' body limit (1 MiB): mutations grow bodies up to a little past it, not beyond. */
const MAX_TEXT = 1_100_000;

export interface MutateJsonOptions {
  /**
   * The text size that bombs and repeated strings grow to (default: a little past the services'
   * 1 MiB body limit). An endpoint with a lower limit of its own passes a little past that: past
   * the limit one case is as good as another, and building, signing and sending 1 MiB cases would
   * cost the run most of its time.
   */
  maxText?: number;
}

const ODD_STRINGS = ["", " ", "null", "-1", "0x10", "\u0000", "\ud800", "é".repeat(40), "a".repeat(5000), "https://", "../../etc/passwd", "<script>", "%00", "{}", "[]"];

function randomScalar(r: Rng): Json {
  switch (r(8)) {
    case 0: return null;
    case 1: return r(2) === 0;
    case 2: return [0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, 1e-300][r(7)]!;
    case 3: return r(1_000_000);
    default: return ODD_STRINGS[r(ODD_STRINGS.length)]!;
  }
}

/** The paths of a JSON value's nodes (as key lists), the root included; of a long array, its first items only. */
function paths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.slice(0, 4).forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === "object") for (const k of Object.keys(v)) paths(v[k]!, [...at, k], out);
  return out;
}

function setAt(root: Json, path: (string | number)[], value: Json): Json {
  if (path.length === 0) return value;
  let cur = root as Record<string | number, Json>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, Json>;
  cur[path[path.length - 1]!] = value;
  return root;
}

function getAt(root: Json, path: (string | number)[]): Json {
  let cur: Json = root;
  for (const k of path) cur = (cur as Record<string | number, Json>)[k]!;
  return cur;
}

/**
 * One to four structural mutations of a JSON value, then its text (sometimes damaged at the
 * byte level too): replaced values, removed and unknown members, long strings, nesting bombs
 * (wrapping a value in 2 to 120 arrays or objects) and array bombs (up to 12,000 items).
 */
export function mutateJson(seed: unknown, r: Rng, opts: MutateJsonOptions = {}): string {
  const maxText = opts.maxText ?? MAX_TEXT;
  let v = structuredClone(seed) as Json;
  const rounds = 1 + r(4);
  for (let k = 0; k < rounds; k++) {
    const all = paths(v);
    const p = all[r(all.length)]!;
    const node = getAt(v, p);
    // Cases 0 and 9+ replace a value; nesting and array bombs come one round in twelve each.
    switch (r(12)) {
      case 0: v = setAt(v, p, randomScalar(r)); break;
      case 1: {
        const depth = 2 + r(119);
        let wrapped: Json = node;
        for (let i = 0; i < depth; i++) wrapped = r(2) === 0 ? [wrapped] : { a: wrapped };
        v = setAt(v, p, wrapped);
        break;
      }
      case 2: {
        const item = r(3) === 0 ? node : r(2) === 0 ? {} : randomScalar(r);
        // Item count of a bomb, kept to bodies around the 1 MiB limit (over it: 413).
        const size = (JSON.stringify(item) ?? "null").length + 1;
        const n = Math.min([10, 100, 1000, 9000, 12_000][r(5)]!, Math.ceil(maxText / size));
        v = setAt(v, p, Array.from({ length: n }, () => item));
        break;
      }
      case 3:
        if (node && typeof node === "object" && !Array.isArray(node)) {
          const keys = Object.keys(node);
          if (keys.length > 0 && r(2) === 0) delete node[keys[r(keys.length)]!];
          else node[`x${r(100)}`] = randomScalar(r);
        }
        break;
      case 4: v = setAt(v, p, typeof node === "string" ? node.repeat(Math.min(2 + r(2000), Math.ceil(maxText / (node.length + 1)))) : String(node)); break;
      case 5: v = setAt(v, p, Array.isArray(node) ? { 0: node[0] ?? null } : [node]); break;
      case 6: v = setAt(v, p, JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":1}}') as Json); break;
      case 7: v = setAt(v, p, Array.isArray(node) ? [...node, ...node, randomScalar(r)] : node); break;
      default: v = setAt(v, p, randomScalar(r));
    }
  }
  let text: string;
  try {
    text = JSON.stringify(v) ?? "null";
  } catch (e) {
    // Rounds that multiplied a bomb past the engine's string length: any body past the limit will do.
    if (!(e instanceof RangeError)) throw e;
    text = `[${'"x",'.repeat(Math.ceil(maxText / 2))}"x"]`;
  }
  // Several rounds can still multiply sizes: past the body limit one case is as good as another.
  if (text.length > 2 * maxText) text = text.slice(0, 2 * maxText);
  // Some cases break the text itself: truncation, a stray byte, brackets left open.
  switch (r(12)) {
    case 0: text = text.slice(0, r(text.length + 1)); break;
    case 1: { const i = r(text.length + 1); text = text.slice(0, i) + "{[\",:}]\\"[r(8)] + text.slice(i); break; }
    case 2: text = "[".repeat(r(200)) + text; break;
    default: break;
  }
  return text;
}

/** Runs `items` through `fn` with `concurrency` workers. */
export async function pool<T>(items: T[], fn: (t: T) => Promise<void>, concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export interface FuzzOutcome {
  statuses: Map<number, number>;
  slowestMs: number;
}

/**
 * Sends every case; fails on the first 5xx and on any answer slower than `maxMs` (default 30 s:
 * a hang detector, not a speed check, so a loaded machine does not fail it), showing the case
 * (`describe`). Returns the status counts and the slowest answer.
 */
export async function fuzz<T>(cases: T[], send: (c: T) => Promise<Response>, opts: { describe: (c: T) => string; maxMs?: number; concurrency?: number }): Promise<FuzzOutcome> {
  const maxMs = opts.maxMs ?? 30_000;
  const statuses = new Map<number, number>();
  let slowestMs = 0;
  await pool(
    cases,
    async (c) => {
      const start = performance.now();
      const res = await send(c);
      await res.arrayBuffer();
      const ms = performance.now() - start;
      slowestMs = Math.max(slowestMs, ms);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) throw new Error(`${res.status} for ${opts.describe(c).slice(0, 2000)}`);
      if (ms > maxMs) throw new Error(`${Math.round(ms)} ms (over ${maxMs}) for ${opts.describe(c).slice(0, 2000)}`);
    },
    opts.concurrency,
  );
  expect([...statuses.keys()].every((s) => s < 500)).toBe(true);
  return { statuses, slowestMs };
}
