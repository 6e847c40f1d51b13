/**
 * Signed notes (C2SP `signed-note`) with Ed25519 keys, and log checkpoints in them (C2SP
 * `tlog-checkpoint`): the formats Go's sumdb and the transparency-log tools read.
 *
 *   note:       text lines ending in "\n", a blank line, then one line per signature:
 *               "— <key name> <base64(key hash (4 bytes) || signature)>\n"
 *   key hash:   the first 4 bytes of SHA-256(<key name> || "\n" || 0x01 || public key)
 *   vkey:       "<key name>+<key hash, 8 hex digits>+<base64(0x01 || public key)>"
 *   checkpoint: "<origin>\n<tree size>\n<base64 root hash>\n" (extension lines may follow)
 *
 * The signature covers the note text exactly, final newline included. Key names are
 * non-empty, without spaces or "+".
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";

const ALG_ED25519 = 0x01;
const SIG_PREFIX = "\u2014 ";
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const unb64 = (s: string): Uint8Array | undefined => (/^[A-Za-z0-9+/]*={0,2}$/.test(s) && s.length % 4 === 0 ? new Uint8Array(Buffer.from(s, "base64")) : undefined);

/** Thrown for a malformed note, key or checkpoint; `code` is stable. */
export class NoteError extends Error {
  constructor(
    readonly code: "malformed_note" | "malformed_key" | "malformed_checkpoint" | "unknown_key" | "bad_signature",
    message: string,
  ) {
    super(message);
  }
}

function checkKeyName(name: string): void {
  if (!name || /[\s+]/.test(name) || [...name].some((c) => c.codePointAt(0)! < 0x20)) throw new NoteError("malformed_key", "a key name is non-empty, without spaces or +");
}

/** The 4-byte key hash of an Ed25519 key, as a big-endian number. */
export function keyHash(name: string, publicKey: Uint8Array): number {
  const h = sha256(new Uint8Array([...enc.encode(name + "\n"), ALG_ED25519, ...publicKey]));
  return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
}

/** A verifier: a key name and its Ed25519 public key. */
export interface NoteVerifier {
  name: string;
  publicKey: Uint8Array;
  hash: number;
}

/** The vkey text of a verifier. */
export function encodeVerifierKey(name: string, publicKey: Uint8Array): string {
  checkKeyName(name);
  return `${name}+${keyHash(name, publicKey).toString(16).padStart(8, "0")}+${b64(new Uint8Array([ALG_ED25519, ...publicKey]))}`;
}

/** Parses a vkey; checks its hash against its key. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  // The key's base64 may hold "+" too: the name ends at the first, the hash at the second.
  const m = /^([^+]+)\+([^+]*)\+(.*)$/s.exec(vkey.trim());
  if (!m) throw new NoteError("malformed_key", "a verifier key is <name>+<hash>+<key>");
  const [, name, hashHex, keyB64] = m as unknown as [string, string, string, string];
  checkKeyName(name);
  const raw = unb64(keyB64);
  if (!/^[0-9a-f]{8}$/.test(hashHex) || !raw || raw.length !== 33 || raw[0] !== ALG_ED25519) throw new NoteError("malformed_key", "the verifier key is not an Ed25519 key");
  const publicKey = raw.slice(1);
  const hash = keyHash(name, publicKey);
  if (hash !== parseInt(hashHex, 16)) throw new NoteError("malformed_key", "the verifier key's hash does not match its key");
  return { name, publicKey, hash };
}

/** A note signer over an Ed25519 private key (its 32-byte seed). */
export class NoteSigner {
  readonly publicKey: Uint8Array;
  readonly hash: number;

  constructor(
    readonly name: string,
    private readonly seed: Uint8Array,
  ) {
    checkKeyName(name);
    this.publicKey = ed25519.getPublicKey(seed);
    this.hash = keyHash(name, this.publicKey);
  }

  get verifierKey(): string {
    return encodeVerifierKey(this.name, this.publicKey);
  }

  /** The signed note: `text` (ending in a newline), a blank line, and this key's signature line. */
  sign(text: string): string {
    if (!text.endsWith("\n") || text.includes("\n\n")) throw new NoteError("malformed_note", "note text ends in a newline and has no blank line");
    const sig = ed25519.sign(enc.encode(text), this.seed);
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, this.hash);
    return `${text}\n${SIG_PREFIX}${this.name} ${b64(new Uint8Array([...prefix, ...sig]))}\n`;
  }
}

/** Opens a signed note with `verifier`: the text, once a signature of that key verifies. */
export function openNote(note: string | Uint8Array, verifier: NoteVerifier): string {
  let s: string;
  try {
    s = typeof note === "string" ? note : dec.decode(note);
  } catch {
    throw new NoteError("malformed_note", "the note is not UTF-8");
  }
  const split = s.lastIndexOf("\n\n");
  if (split < 0 || !s.endsWith("\n")) throw new NoteError("malformed_note", "the note has no signature block");
  const text = s.slice(0, split + 1);
  const lines = s.slice(split + 2, -1).split("\n");
  let known = false;
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) throw new NoteError("malformed_note", "a signature line starts with an em dash and a space");
    const [name, sigB64, extra] = line.slice(SIG_PREFIX.length).split(" ");
    const raw = sigB64 === undefined ? undefined : unb64(sigB64);
    if (!name || !raw || raw.length < 5 || extra !== undefined) throw new NoteError("malformed_note", "a signature line is <name> <base64 signature>");
    const hash = new DataView(raw.buffer, raw.byteOffset, 4).getUint32(0);
    if (name !== verifier.name || hash !== verifier.hash) continue;
    known = true;
    if (raw.length === 4 + 64 && ed25519.verify(raw.slice(4), enc.encode(text), verifier.publicKey)) return text;
  }
  throw known ? new NoteError("bad_signature", `the signature of ${verifier.name} does not verify`) : new NoteError("unknown_key", `the note has no signature of ${verifier.name}`);
}

/** A log checkpoint: origin, size and root hash. */
export interface Checkpoint {
  origin: string;
  size: number;
  root: Uint8Array;
}

/** The checkpoint body (the note text). */
export function checkpointText(c: Checkpoint): string {
  if (!c.origin || c.origin.includes("\n")) throw new NoteError("malformed_checkpoint", "the origin is one non-empty line");
  return `${c.origin}\n${c.size}\n${b64(c.root)}\n`;
}

/** Parses a checkpoint body (extension lines are allowed and ignored). */
export function parseCheckpointText(text: string): Checkpoint {
  const [origin, size, root] = text.split("\n");
  const r = root === undefined ? undefined : unb64(root);
  if (!origin || size === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(size) || !r || r.length !== 32) throw new NoteError("malformed_checkpoint", "a checkpoint is <origin>, <size>, <base64 root hash>, one a line");
  return { origin, size: Number(size), root: r };
}

/** Opens and parses a signed checkpoint. */
export function openCheckpoint(note: string | Uint8Array, verifier: NoteVerifier): Checkpoint {
  return parseCheckpointText(openNote(note, verifier));
}
