/** The Merkle tree, its proofs and signed checkpoints, against RFC 6962/9162 vectors and a naive tree. */
import { describe, expect, test } from "bun:test";
import { sha256 } from "@noble/hashes/sha2.js";
import { EMPTY_ROOT, leafHash, MerkleTree, nodeHash } from "../../src/audit/merkle.ts";
import { verifyConsistency, verifyInclusion } from "../../src/audit/proofs.ts";
import { checkpointText, NoteSigner, openCheckpoint, openNote, parseVerifierKey } from "../../src/audit/note.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

/** The inputs of the CT test vectors (Trillian's and certificate-transparency-go's). */
const CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"].map(bytes);

/** MTH straight from the RFC's definition, with no stored subtrees. */
function naiveRoot(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return leafHash(leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(naiveRoot(leaves.slice(0, k)), naiveRoot(leaves.slice(k)));
}

const treeOf = (entries: Uint8Array[]) => {
  const t = new MerkleTree();
  for (const e of entries) t.push(leafHash(e));
  return t;
};

describe("Merkle tree", () => {
  test("matches the CT test vectors", () => {
    const t = treeOf(CT_LEAVES);
    expect(hex(EMPTY_ROOT)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(t.root(1))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    expect(hex(t.root(8))).toBe("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
  });

  test("roots equal the naive recursion for every size up to 70", () => {
    const entries = Array.from({ length: 70 }, (_, i) => new TextEncoder().encode(`entry ${i}`));
    const t = treeOf(entries);
    for (let n = 0; n <= 70; n++) expect(hex(t.root(n))).toBe(hex(naiveRoot(entries.slice(0, n))));
  });

  test("every inclusion and consistency proof up to 40 leaves verifies; altered ones do not", () => {
    const entries = Array.from({ length: 40 }, (_, i) => new Uint8Array([i, i * 7]));
    const t = treeOf(entries);
    for (let n = 1; n <= 40; n++) {
      const root = t.root(n);
      for (let m = 0; m < n; m++) {
        const path = t.inclusionProof(m, n);
        expect(verifyInclusion(m, n, t.leaf(m), path, root)).toBe(true);
        expect(verifyInclusion(m, n, leafHash(new Uint8Array([99])), path, root)).toBe(false);
        if (n > 1) expect(verifyInclusion((m + 1) % n, n, t.leaf(m), path, root)).toBe(false);
        if (path.length) expect(verifyInclusion(m, n, t.leaf(m), path.slice(1), root)).toBe(false);
      }
      for (let m = 1; m <= n; m++) {
        const proof = t.consistencyProof(m, n);
        expect(verifyConsistency(m, n, t.root(m), root, proof)).toBe(true);
        if (m < n) {
          expect(verifyConsistency(m, n, t.root(m), root, proof.slice(0, -1))).toBe(false);
          const wrong = proof.map((p, i) => (i === 0 ? sha256(p) : p));
          expect(verifyConsistency(m, n, t.root(m), root, wrong)).toBe(false);
          expect(verifyConsistency(m, n, root, root, proof)).toBe(false);
        }
      }
    }
  });

  test("proofs beyond the tree are refused", () => {
    const t = treeOf(CT_LEAVES);
    expect(() => t.inclusionProof(8, 8)).toThrow();
    expect(() => t.consistencyProof(0, 8)).toThrow();
    expect(() => t.root(9)).toThrow();
    expect(verifyInclusion(8, 8, t.leaf(0), [], t.root())).toBe(false);
  });
});

describe("signed notes", () => {
  // The example key and note of Go's golang.org/x/mod/sumdb/note documentation.
  const SKEY_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
  const VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
  const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const SIGNED = TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

  test("signs and verifies like Go's note package", () => {
    const seed = new Uint8Array(Buffer.from(SKEY_SEED, "base64")).slice(1);
    const signer = new NoteSigner("PeterNeumann", seed);
    expect(signer.verifierKey).toBe(VKEY);
    expect(signer.sign(TEXT)).toBe(SIGNED);
    expect(openNote(SIGNED, parseVerifierKey(VKEY))).toBe(TEXT);
  });

  test("a changed text, a wrong key or a malformed note is refused", () => {
    const v = parseVerifierKey(VKEY);
    expect(() => openNote(SIGNED.replace("cryptography", "cryptographY"), v)).toThrow(/does not verify/);
    const other = new NoteSigner("PeterNeumann", new Uint8Array(32).fill(7));
    expect(() => openNote(SIGNED, parseVerifierKey(other.verifierKey))).toThrow(/no signature/);
    expect(() => openNote(TEXT, v)).toThrow();
    expect(() => parseVerifierKey(VKEY.replace("c74f20a3", "c74f20a4"))).toThrow(/hash/);
  });

  test("a verifier key whose base64 holds '+' parses", () => {
    for (let i = 0; i < 64; i++) {
      const signer = new NoteSigner("log", new Uint8Array(32).fill(i));
      expect(parseVerifierKey(signer.verifierKey).hash).toBe(signer.hash);
    }
  });

  test("checkpoints round-trip", () => {
    const signer = new NoteSigner("example.com/log", new Uint8Array(32).fill(1));
    const t = treeOf(CT_LEAVES);
    const note = signer.sign(checkpointText({ origin: "example.com/log", size: 8, root: t.root() }));
    expect(note.split("\n").slice(0, 3)).toEqual(["example.com/log", "8", "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="]);
    const c = openCheckpoint(note, parseVerifierKey(signer.verifierKey));
    expect(c.size).toBe(8);
    expect(hex(c.root)).toBe(hex(t.root()));
  });
});
