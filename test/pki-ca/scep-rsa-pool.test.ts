/**
 * The SCEP RA's RSA threads (apps/pki-ca/scep/rsa-pool.ts): raw decryptions and PKCS#1 v1.5
 * signatures from the worker threads equal the calling thread's, concurrent calls each get
 * their own answer, a ciphertext the key cannot take answers undefined (never throws), and a
 * closed pool (the CA sealed or stopped) answers on the calling thread.
 */
import { describe, expect, test } from "bun:test";
import { constants, generateKeyPairSync, publicEncrypt, verify } from "node:crypto";
import { inThreadRsa, RsaPool } from "../../apps/pki-ca/scep/rsa-pool.ts";

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pkcs8 = () => new Uint8Array(privateKey.export({ format: "der", type: "pkcs8" }));
const sealed = (m: string) => new Uint8Array(publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(m)));
/** The message inside a raw PKCS#1 v1.5 block (after 0x00 0x02 PS 0x00). */
const unpadded = (em: Uint8Array) => Buffer.from(em.subarray(em.indexOf(0, 2) + 1)).toString();

describe("SCEP RA RSA threads", () => {
  test("workers decrypt and sign as the calling thread does, concurrently, each call its own answer", async () => {
    const pool = RsaPool.create(pkcs8(), privateKey, 2);
    try {
      const messages = Array.from({ length: 24 }, (_, i) => `content key ${i}`);
      const out = await Promise.all(messages.map((m) => pool.decrypt(sealed(m))));
      expect(out.map((em) => unpadded(em!))).toEqual(messages);
      const here = await inThreadRsa(privateKey)(sealed("same"));
      expect(unpadded((await pool.decrypt(sealed("same")))!)).toBe(unpadded(here!));
      const sig = await pool.sign(new TextEncoder().encode("signed attributes"));
      expect(verify("sha256", Buffer.from("signed attributes"), publicKey, sig)).toBe(true);
      // Not a ciphertext of this key (longer than the modulus): undefined, not an exception.
      expect(await pool.decrypt(new Uint8Array(512).fill(0xff))).toBeUndefined();
    } finally {
      pool.close();
    }
  }, 60_000);

  test("a closed pool answers on the calling thread", async () => {
    const pool = RsaPool.create(pkcs8(), privateKey, 1);
    pool.close();
    expect(unpadded((await pool.decrypt(sealed("after close")))!)).toBe("after close");
    expect(verify("sha256", Buffer.from("x"), publicKey, await pool.sign(new TextEncoder().encode("x")))).toBe(true);
  }, 60_000);

  test("no threads (size 0): the calling thread", async () => {
    const pool = RsaPool.create(pkcs8(), privateKey, 0);
    expect(unpadded((await pool.decrypt(sealed("in thread")))!)).toBe("in thread");
  });
});
