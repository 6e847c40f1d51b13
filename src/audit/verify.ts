/**
 * Offline verification of an audit log export against a signed checkpoint, with no server:
 * what `cryptoutil audit verify` runs.
 *
 * The export (JSON lines, see apps/audit/domain.ts `export`) holds each entry's hashed text and
 * the leaf hash recorded when it was appended (another tenant's entry: the leaf hash only),
 * then the log's checkpoints. The checks, in order:
 *  1. the checkpoint's signature verifies with the verifier key;
 *  2. positions run 0, 1, 2, ... with no gap, repeat or swap, and each entry's text names its
 *     own position (a deleted or reordered row is named here);
 *  3. the tree recomputed from the entries' texts has the checkpoint's root.
 * When 3 fails, the first bad entry is found: when the recorded leaf hashes give the signed
 * root they are authentic, and the first entry whose text does not hash to its recorded leaf
 * is the one changed; otherwise the export's own signed checkpoints bound it to the first
 * range whose prefix root no longer matches.
 */
import { leafHash, MerkleTree } from "./merkle.ts";
import { NoteError, openCheckpoint, parseVerifierKey, type Checkpoint } from "./note.ts";
import { equalBytes } from "../crypto/constant-time.ts";

export interface VerifyResult {
  ok: boolean;
  /** The checkpoint's size (entries covered). */
  treeSize: number;
  /** Entries of the export whose text was checked (the others are other tenants'). */
  entriesChecked: number;
  /** The first entry found bad, when known exactly. */
  firstBad?: number;
  /** When only bounded: the first bad entry lies in [from, to). */
  badRange?: { from: number; to: number };
  reason?: string;
}

const enc = new TextEncoder();
const unb64 = (s: unknown): Uint8Array | undefined => (typeof s === "string" && /^[A-Za-z0-9+/]{43}=$/.test(s) ? new Uint8Array(Buffer.from(s, "base64")) : undefined);

interface Line {
  seq: number;
  /** The entry's hashed text (absent: another tenant's entry). */
  entry?: string;
  recorded: Uint8Array;
}

/** Thrown for an export that cannot be read at all (not the log being wrong). */
export class ExportFormatError extends Error {}

/** Reads the export's lines: entries in file order, and the checkpoint notes. */
function parseExport(text: string): { lines: Line[]; checkpoints: string[] } {
  const lines: Line[] = [];
  const checkpoints: string[] = [];
  let n = 0;
  for (const raw of text.split("\n")) {
    n++;
    if (raw.trim() === "") continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      throw new ExportFormatError(`line ${n} of the export is not JSON`);
    }
    if (typeof o?.checkpoint === "string") {
      checkpoints.push(o.checkpoint);
      continue;
    }
    const recorded = unb64(o?.leaf_hash);
    if (typeof o?.seq !== "number" || !Number.isSafeInteger(o.seq) || o.seq < 0 || !recorded || (o.entry !== undefined && typeof o.entry !== "string")) {
      throw new ExportFormatError(`line ${n} of the export is neither an entry nor a checkpoint`);
    }
    lines.push({ seq: o.seq, entry: o.entry as string | undefined, recorded });
  }
  return { lines, checkpoints };
}

/** The position an entry's own text names, if it names one. */
function positionInText(entry: string): number | undefined {
  try {
    const seq = (JSON.parse(entry) as { seq?: unknown }).seq;
    return typeof seq === "number" ? seq : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies `exportText` against the signed checkpoint `checkpointNote` and the verifier key
 * `vkey`. Throws `NoteError` for a bad key or checkpoint signature and `ExportFormatError` for
 * an unreadable export; answers `ok: false` with the first bad entry for a log that was altered.
 */
export function verifyExport(exportText: string, checkpointNote: string, vkey: string): VerifyResult {
  const verifier = parseVerifierKey(vkey);
  const cp = openCheckpoint(checkpointNote, verifier);
  const { lines, checkpoints } = parseExport(exportText);
  const N = cp.size;
  const fail = (r: Omit<VerifyResult, "ok" | "treeSize" | "entriesChecked">): VerifyResult => ({ ok: false, treeSize: N, entriesChecked: lines.filter((l) => l.entry !== undefined).length, ...r });

  // 2. Positions: one line per position, in order.
  for (let i = 0; i < Math.min(lines.length, N); i++) {
    const l = lines[i]!;
    if (l.seq > i) return fail({ firstBad: i, reason: `entry ${i} is missing (the export goes from ${i - 1} to ${l.seq})` });
    if (l.seq < i) return fail({ firstBad: l.seq, reason: `entry ${l.seq} appears again at position ${i} (rows repeated or reordered)` });
    if (l.entry !== undefined) {
      const named = positionInText(l.entry);
      if (named !== i) return fail({ firstBad: i, reason: `the entry at position ${i} is ${named === undefined ? "not an entry of this log" : `entry ${named}'s text (rows reordered)`}` });
    }
  }
  if (lines.length < N) return fail({ firstBad: lines.length, reason: `the export ends at ${lines.length} entries; the checkpoint covers ${N} (entry ${lines.length} is missing)` });

  // 3. The tree of the entries' texts (other tenants' entries by their recorded leaf).
  const computed = new MerkleTree();
  const recorded = new MerkleTree();
  for (const l of lines.slice(0, N)) {
    computed.push(l.entry === undefined ? l.recorded : leafHash(enc.encode(l.entry)));
    recorded.push(l.recorded);
  }
  const entriesChecked = lines.slice(0, N).filter((l) => l.entry !== undefined).length;
  if (equalBytes(computed.root(N), cp.root)) return { ok: true, treeSize: N, entriesChecked };

  const firstChanged = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (!equalBytes(computed.leaf(i), recorded.leaf(i))) return i;
    return undefined;
  };
  if (equalBytes(recorded.root(N), cp.root)) {
    const i = firstChanged(0, N)!;
    return fail({ firstBad: i, reason: `entry ${i} was changed: its text does not hash to the leaf the signed tree holds` });
  }
  // The recorded leaves were altered too: bound the change with the signed checkpoints.
  const signed: Checkpoint[] = [];
  for (const note of checkpoints) {
    try {
      const c = openCheckpoint(note, verifier);
      if (c.origin === cp.origin && c.size <= N && c.size > 0) signed.push(c);
    } catch (e) {
      if (!(e instanceof NoteError)) throw e;
    }
  }
  signed.sort((x, y) => x.size - y.size);
  let from = 0;
  for (const c of signed) {
    if (!equalBytes(computed.root(c.size), c.root)) {
      const i = firstChanged(from, c.size);
      return i === undefined
        ? fail({ badRange: { from, to: c.size }, reason: `the first bad entry lies in ${from}..${c.size - 1}: the checkpoint of size ${c.size} does not match` })
        : fail({ firstBad: i, reason: `entry ${i} was changed (its text does not hash to its recorded leaf; the checkpoint of size ${c.size} does not match)` });
    }
    from = c.size;
  }
  const i = firstChanged(from, N);
  return i === undefined
    ? fail({ badRange: { from, to: N }, reason: `the first bad entry lies in ${from}..${N - 1}: the root does not match the checkpoint` })
    : fail({ firstBad: i, reason: `entry ${i} was changed (its text does not hash to its recorded leaf)` });
}
