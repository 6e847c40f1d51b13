/**
 * A small DER reader and the few writers the enrollment protocols need beyond `derTlv`
 * (src/pki/leaf-signer.ts): OBJECT IDENTIFIERs, INTEGERs, and walking a structure's children.
 * Reading never trusts a length: every node must lie inside its parent, or `malformed_input`.
 */
import { AppError } from "../service/errors.ts";
import { derTlv } from "./leaf-signer.ts";

/** One DER node of `bytes`: its tag, where it starts, where its content starts, where it ends. */
export interface DerNode {
  bytes: Uint8Array;
  tag: number;
  start: number;
  body: number;
  end: number;
}

const malformed = (what: string) => new AppError("malformed_input", `${what}: the DER structure is not as expected`);

/** The node at `at`, which must end by `limit` (single-byte tags, lengths below 16 MiB). */
export function derNode(bytes: Uint8Array, at = 0, limit = bytes.length, what = "the message"): DerNode {
  if (at + 2 > limit) throw malformed(what);
  const tag = bytes[at]!;
  if ((tag & 0x1f) === 0x1f) throw malformed(what);
  let len = bytes[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || p + n > limit) throw malformed(what);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + bytes[p + i]!;
    p += n;
  }
  if (p + len > limit) throw malformed(what);
  return { bytes, tag, start: at, body: p, end: p + len };
}

/** The whole of `bytes` as one node with tag `tag` (nothing after it). */
export function derRoot(bytes: Uint8Array, tag: number, what: string): DerNode {
  const n = derNode(bytes, 0, bytes.length, what);
  if (n.tag !== tag || n.end !== bytes.length) throw malformed(what);
  return n;
}

/** The children of a constructed node, in order; with `tags`, each must have one of them. */
export function derChildren(n: DerNode, what: string, tags?: number[]): DerNode[] {
  if (!(n.tag & 0x20)) throw malformed(what);
  const out: DerNode[] = [];
  for (let p = n.body; p < n.end; ) {
    const c = derNode(n.bytes, p, n.end, what);
    if (tags && !tags.includes(c.tag)) throw malformed(what);
    out.push(c);
    p = c.end;
  }
  return out;
}

/** The content bytes of a node; with `tag`, the node must have it. */
export function derContent(n: DerNode, what: string, tag?: number): Uint8Array {
  if (tag !== undefined && n.tag !== tag) throw malformed(what);
  return n.bytes.subarray(n.body, n.end);
}

/** The whole encoding of a node (tag, length and content). */
export const derBytes = (n: DerNode): Uint8Array => n.bytes.subarray(n.start, n.end);

/** A non-negative INTEGER that fits in 2^53 (body part ids, status codes). */
export function derSmallInt(n: DerNode, what: string): number {
  const b = derContent(n, what, 0x02);
  if (b.length === 0 || b.length > 7 || b[0]! & 0x80) throw malformed(what);
  return b.reduce((v, x) => v * 256 + x, 0);
}

/** An OBJECT IDENTIFIER in dotted form. */
export function derOid(n: DerNode, what: string): string {
  const b = derContent(n, what, 0x06);
  if (b.length === 0 || b.length > 64 || b[b.length - 1]! & 0x80) throw malformed(what);
  const arcs: number[] = [];
  let v = 0;
  for (const x of b) {
    v = v * 128 + (x & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw malformed(what);
    if (!(x & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  const first = arcs.shift()!;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs].join(".");
}

/** DER of an OBJECT IDENTIFIER in dotted form. */
export function oidDer(oid: string): Uint8Array {
  const parts = oid.split(".").map(Number);
  const body: number[] = [];
  for (const n of [parts[0]! * 40 + parts[1]!, ...parts.slice(2)]) {
    const chunk = [n & 0x7f];
    for (let x = Math.floor(n / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
    body.push(...chunk);
  }
  return derTlv(0x06, new Uint8Array(body));
}

/** DER of a non-negative INTEGER. */
export function intDer(value: number): Uint8Array {
  const b: number[] = [];
  for (let v = value; v > 0; v = Math.floor(v / 256)) b.unshift(v % 256);
  if (b.length === 0 || b[0]! & 0x80) b.unshift(0);
  return derTlv(0x02, new Uint8Array(b));
}

/** DER of a UTF8String. */
export const utf8Der = (s: string): Uint8Array => derTlv(0x0c, new TextEncoder().encode(s));

/**
 * The TBSCertificate fields a certificate is named and keyed by (RFC 5280 §4.1): serialNumber,
 * issuer, subject and subjectPublicKeyInfo, as nodes of `der` (the whole certificate).
 */
export function certificateFields(der: Uint8Array, what = "the certificate"): { serial: DerNode; issuer: DerNode; subject: DerNode; spki: DerNode } {
  const [tbs] = derChildren(derRoot(der, 0x30, what), what, [0x30, 0x03]);
  if (tbs?.tag !== 0x30) throw malformed(what);
  const fields = derChildren(tbs, what);
  const at = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version, absent for v1
  const [serial, , issuer, , subject, spki] = fields.slice(at, at + 6);
  if (serial?.tag !== 0x02 || issuer?.tag !== 0x30 || subject?.tag !== 0x30 || spki?.tag !== 0x30) throw malformed(what);
  return { serial, issuer, subject, spki };
}
