/**
 * Issue 21 (2): libcryptoutil-pkcs11.so, driven by OpenSC's pkcs11-tool and traced by
 * pkcs11-spy, against sm-kms (a child process) over its mTLS port.
 *
 * Slot "alpha" holds a client certificate of tenant-a whose key is encrypted (the PIN is its
 * passphrase); slot "beta" one of tenant-b with a plain key (no login needed); slot "gamma" a
 * bearer token file of tenant-b on the public port, limited to the keys tagged "gamma". Signatures made
 * through the module are checked by openssl against the public keys sm-kms exports; ciphertexts
 * the module makes are opened by sm-kms and the other way round. Also sm-kms's raw routes over
 * HTTPS: tenant isolation, the padding family bound to the key, bad input is a clean 4xx.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPublicKey, publicEncrypt, constants, verify as nodeVerify } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { API, MODULE, requireTools, run, startKmsBackend, type KmsBackend } from "./pkcs11-harness.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";

const SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
const ready = requireTools([["pkcs11-tool", ["--help"]], ["openssl", ["version"]]], [MODULE, SPY]);

let b: KmsBackend;
const keys: Record<string, string> = {};
const PIN = "4711-secret";

const tool = (args: string[], env?: NodeJS.ProcessEnv) => run(["pkcs11-tool", "--module", MODULE, ...args], { env: env ?? b.env });
const asAlpha = (args: string[]) => tool(["--token-label", "alpha", "--login", "--pin", PIN, ...args]);
const file = (name: string) => join(b.root, name);
/** pkcs11-tool picks the key of --sign, --verify and --decrypt by CKA_ID: the key's UUID without dashes. */
const idOf = (name: string) => keys[name]!.replaceAll("-", "");

async function publicPem(tenant: string, id: string): Promise<string> {
  const { body } = await b.api(tenant, "GET", `/keys/${id}/public-key`);
  const { kid: _k, alg: _a, use: _u, ...jwk } = body;
  return createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "pem" }) as string;
}

beforeAll(async () => {
  if (!ready) return;
  b = await startKmsBackend([
    { label: "alpha", tenant: "tenant-a", pin: PIN },
    { label: "beta", tenant: "tenant-b" },
    { label: "gamma", tenant: "tenant-b", tokenFile: true, tag: "gamma" },
  ]);
  for (const [name, algorithm, tenant] of [
    ["ec-signer", "ES256", "tenant-a"],
    ["rsa-signer", "RS256", "tenant-a"],
    ["pss-signer", "PS256", "tenant-a"],
    ["oaep", "RSA-OAEP-256", "tenant-a"],
    ["gcm", "A256GCM", "tenant-a"],
    ["b-signer", "ES384", "tenant-b"],
    ["g-signer", "ES256", "tenant-b"],
  ] as const) {
    const r = await b.api(tenant, "POST", "/keys", { name, algorithm, tags: name === "g-signer" ? ["gamma"] : [] });
    expect(r.status).toBe(201);
    keys[name] = r.body.id;
  }
  writeFileSync(file("message.txt"), "a message signed by a key that lives in sm-kms\n");
});
afterAll(async () => {
  await b?.stop();
});

describe.if(ready)("pkcs11-tool", () => {
  test("lists a slot per configured credential, with a token each", async () => {
    const r = await tool(["--list-slots"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Slot 0 (0x0): sm-kms alpha");
    expect(r.stdout).toContain("Slot 1 (0x1): sm-kms beta");
    expect(r.stdout).toContain("Slot 2 (0x2): sm-kms gamma");
    expect(r.stdout).toMatch(/token label\s+: alpha[\s\S]*login required/);
    const info = await tool(["--show-info"]);
    expect(info.stdout).toContain("cryptoutil sm-kms PKCS#11");
    expect(info.stdout).toMatch(/Cryptoki version 2\.40/);
  });

  test("lists the tenant's keys as objects after login; a wrong PIN is CKR_PIN_INCORRECT", async () => {
    const r = await asAlpha(["--list-objects"]);
    expect(r.status).toBe(0);
    for (const name of ["ec-signer", "rsa-signer", "pss-signer", "oaep", "gcm"]) expect(r.stdout).toContain(`label:      ${name}`);
    expect(r.stdout).not.toContain("b-signer");
    expect(r.stdout).toContain(`ID:         ${keys["ec-signer"]!.replaceAll("-", "")}`);
    expect(r.stdout).toMatch(/Public Key Object; EC\s+EC_POINT 256 bits/);
    expect(r.stdout).toContain("EC_PARAMS:  06082a8648ce3d030107");
    expect(r.stdout).toMatch(/Private Key Object; RSA[\s\S]*Access:\s+sensitive, always sensitive, never extractable/);
    // Without the PIN the encrypted client key does not open: nothing is listed.
    const none = await tool(["--token-label", "alpha", "--list-objects"]);
    expect(none.status).toBe(0);
    expect(none.stdout).not.toContain("ec-signer");
    const bad = await tool(["--token-label", "alpha", "--login", "--pin", "wrong", "--list-objects"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("CKR_PIN_INCORRECT");
    // Tenant B's slot sees only tenant B's key, without a PIN.
    const beta = await tool(["--token-label", "beta", "--list-objects"]);
    expect(beta.stdout).toContain("label:      b-signer");
    expect(beta.stdout).not.toContain("ec-signer");
  });

  test("signs with EC (ECDSA-SHA256 and ECDSA over a digest) and openssl verifies with the exported public key", async () => {
    const pem = file("ec.pub.pem");
    writeFileSync(pem, await publicPem("tenant-a", keys["ec-signer"]!));
    const sig = file("ec.sig");
    const r = await asAlpha(["--sign", "-m", "ECDSA-SHA256", "--id", idOf("ec-signer"), "-i", file("message.txt"), "-o", sig, "--signature-format", "openssl"]);
    expect(r.status).toBe(0);
    const v = await run(["openssl", "dgst", "-sha256", "-verify", pem, "-signature", sig, file("message.txt")]);
    expect(v.stdout).toContain("Verified OK");
    // CKM_ECDSA over a SHA-384 digest the caller made.
    const digest = file("message.sha384");
    writeFileSync(digest, new Uint8Array(await crypto.subtle.digest("SHA-384", readFileSync(file("message.txt")))));
    const raw = await asAlpha(["--sign", "-m", "ECDSA", "--id", idOf("ec-signer"), "-i", digest, "-o", file("ec-raw.sig"), "--signature-format", "openssl"]);
    expect(raw.status).toBe(0);
    const v2 = await run(["openssl", "dgst", "-sha384", "-verify", pem, "-signature", file("ec-raw.sig"), file("message.txt")]);
    expect(v2.stdout).toContain("Verified OK");
    // pkcs11-tool's own verify goes through the module (the service checks it).
    const ok = await asAlpha(["--verify", "-m", "ECDSA-SHA256", "--id", idOf("ec-signer"), "-i", file("message.txt"), "--signature-file", sig, "--signature-format", "openssl"]);
    expect(ok.stdout).toContain("Signature is valid");
    writeFileSync(file("other.txt"), "another message");
    const no = await asAlpha(["--verify", "-m", "ECDSA-SHA256", "--id", idOf("ec-signer"), "-i", file("other.txt"), "--signature-file", sig, "--signature-format", "openssl"]);
    expect(no.stdout + no.stderr).toMatch(/Invalid signature|CKR_SIGNATURE_INVALID/);
  });

  test("signs with RSA: SHA256-RSA-PKCS, RSA-PKCS over a DigestInfo, RSA-PKCS-PSS; openssl verifies each", async () => {
    const pem = file("rsa.pub.pem");
    writeFileSync(pem, await publicPem("tenant-a", keys["rsa-signer"]!));
    const r = await asAlpha(["--sign", "-m", "SHA256-RSA-PKCS", "--id", idOf("rsa-signer"), "-i", file("message.txt"), "-o", file("rsa.sig")]);
    expect(r.status).toBe(0);
    expect((await run(["openssl", "dgst", "-sha256", "-verify", pem, "-signature", file("rsa.sig"), file("message.txt")])).stdout).toContain("Verified OK");
    // What ssh and TLS stacks send: a DigestInfo (SHA-512 here), signed with CKM_RSA_PKCS.
    const h = new Uint8Array(await crypto.subtle.digest("SHA-512", readFileSync(file("message.txt"))));
    const prefix = Buffer.from("3051300d060960864801650304020305000440", "hex");
    writeFileSync(file("digestinfo.bin"), Buffer.concat([prefix, h]));
    const raw = await asAlpha(["--sign", "-m", "RSA-PKCS", "--id", idOf("rsa-signer"), "-i", file("digestinfo.bin"), "-o", file("rsa-raw.sig")]);
    expect(raw.status).toBe(0);
    expect((await run(["openssl", "dgst", "-sha512", "-verify", pem, "-signature", file("rsa-raw.sig"), file("message.txt")])).stdout).toContain("Verified OK");

    const pssPem = file("pss.pub.pem");
    writeFileSync(pssPem, await publicPem("tenant-a", keys["pss-signer"]!));
    const pss = await asAlpha(["--sign", "-m", "SHA256-RSA-PKCS-PSS", "--id", idOf("pss-signer"), "-i", file("message.txt"), "-o", file("pss.sig")]);
    expect(pss.status).toBe(0);
    const vp = await run(["openssl", "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-verify", pssPem, "-signature", file("pss.sig"), file("message.txt")]);
    expect(vp.stdout).toContain("Verified OK");
    const vpt = await asAlpha(["--verify", "-m", "SHA256-RSA-PKCS-PSS", "--id", idOf("pss-signer"), "-i", file("message.txt"), "--signature-file", file("pss.sig")]);
    expect(vpt.stdout).toContain("Signature is valid");
    // The padding family is the key's own: an RS256 key refuses PSS.
    const wrong = await asAlpha(["--sign", "-m", "SHA256-RSA-PKCS-PSS", "--id", idOf("rsa-signer"), "-i", file("message.txt"), "-o", file("x.sig")]);
    expect(wrong.status).not.toBe(0);
  });

  test("decrypts RSA-OAEP (SHA-256) that node encrypted to the exported public key (pkcs11-tool encrypts with secret keys only)", async () => {
    const pem = await publicPem("tenant-a", keys.oaep!);
    const ct = publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, Buffer.from("the plaintext"));
    writeFileSync(file("oaep.bin"), ct);
    const r = await asAlpha(["--decrypt", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256", "--id", idOf("oaep"), "-i", file("oaep.bin"), "-o", file("oaep.out")]);
    expect(r.status).toBe(0);
    expect(readFileSync(file("oaep.out"), "utf8")).toBe("the plaintext");
    // The service made the same decryption: one RSA-OAEP-256 key, two routes.
    const d = await b.api("tenant-a", "POST", `/keys/${keys.oaep}/raw/decrypt`, { mechanism: "RSA-OAEP", ciphertext: ct.toString("base64url") });
    expect(Buffer.from(d.body.plaintext, "base64url").toString()).toBe("the plaintext");
    // OAEP with SHA-1 is not the key's algorithm.
    const sha1 = await asAlpha(["--decrypt", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA-1", "--mgf", "MGF1-SHA1", "--id", idOf("oaep"), "-i", file("oaep.bin"), "-o", file("x.out")]);
    expect(sha1.status).not.toBe(0);
  });

  test("generates EC and RSA key pairs in sm-kms, and random bytes", async () => {
    const ec = await asAlpha(["--keypairgen", "--key-type", "EC:prime256v1", "--label", "made-by-p11"]);
    expect(ec.status).toBe(0);
    expect(ec.stdout).toMatch(/Public Key Object; EC\s+EC_POINT 256 bits/);
    const rsa = await asAlpha(["--keypairgen", "--key-type", "rsa:2048", "--label", "rsa-by-p11"]);
    expect(rsa.status).toBe(0);
    const list = await b.api("tenant-a", "GET", "/keys?limit=100");
    const made = list.body.items.filter((k: { name: string }) => k.name === "made-by-p11" || k.name === "rsa-by-p11");
    expect(made.map((k: { algorithm: string }) => k.algorithm).sort()).toEqual(["ES256", "RS256"]);
    keys["made-by-p11"] = made.find((k: { name: string }) => k.name === "made-by-p11").id;
    const sign = await asAlpha(["--sign", "-m", "ECDSA-SHA256", "--id", idOf("made-by-p11"), "-i", file("message.txt"), "-o", file("made.sig")]);
    expect(sign.status).toBe(0);
    const rnd = await asAlpha(["--generate-random", "2000", "-o", file("random.bin")]);
    expect(rnd.status).toBe(0);
    expect(readFileSync(file("random.bin")).length).toBe(2000);
  });

  test("a slot with a bearer token file on the public port, limited to the keys of one tag", async () => {
    const list = await tool(["--token-label", "gamma", "--list-objects"]);
    expect(list.status).toBe(0);
    expect(list.stdout).toContain("label:      g-signer");
    expect(list.stdout).not.toContain("b-signer");
    const pem = file("g.pub.pem");
    writeFileSync(pem, await publicPem("tenant-b", keys["g-signer"]!));
    const r = await tool(["--token-label", "gamma", "--sign", "-m", "ECDSA-SHA256", "--id", idOf("g-signer"), "-i", file("message.txt"), "-o", file("g.sig"), "--signature-format", "openssl"]);
    expect(r.status).toBe(0);
    expect((await run(["openssl", "dgst", "-sha256", "-verify", pem, "-signature", file("g.sig"), file("message.txt")])).stdout).toContain("Verified OK");
  });

  test("pkcs11-spy traces a session: every call returns CKR_OK but the expected ones", async () => {
    const log = file("spy.log");
    const env = { ...b.env, PKCS11SPY: MODULE, PKCS11SPY_OUTPUT: log };
    const r = await run(["pkcs11-tool", "--module", SPY, "--token-label", "alpha", "--login", "--pin", PIN, "--sign", "-m", "ECDSA-SHA256", "--id", idOf("ec-signer"), "-i", file("message.txt"), "-o", file("spy.sig")], { env });
    expect(r.status).toBe(0);
    const trace = readFileSync(log, "utf8");
    for (const fn of ["C_Initialize", "C_GetSlotList", "C_OpenSession", "C_Login", "C_FindObjectsInit", "C_GetAttributeValue", "C_SignInit", "C_Sign", "C_Finalize"]) expect(trace).toContain(fn);
    const returns = [...trace.matchAll(/Returned:\s+\d+\s+(CKR_\w+)/g)].map((m) => m[1]);
    expect(returns.length).toBeGreaterThan(10);
    // Attribute probes of absent or sensitive attributes are the only non-OK answers.
    expect(returns.filter((rv) => !["CKR_OK", "CKR_ATTRIBUTE_TYPE_INVALID", "CKR_ATTRIBUTE_SENSITIVE"].includes(rv!))).toEqual([]);
  });
});

describe.if(ready)("sm-kms raw operations over HTTPS", () => {
  test("are in the OpenAPI document under both prefixes", async () => {
    const doc = await (await fetch(`${b.publicUrl}/docs/openapi.json`, { tls: { ca: readFileSync(b.trustBundle, "utf8") } } as RequestInit)).json();
    for (const route of ["sign", "verify", "encrypt", "decrypt"]) {
      expect(Object.keys(doc.paths)).toContain(`/service/api/v1/keys/{id}/raw/${route}`);
      expect(Object.keys(doc.paths)).toContain(`/browser/api/v1/keys/{id}/raw/${route}`);
    }
  });

  test("another tenant's key is 404; a mechanism of another family is 400 mechanism_not_allowed", async () => {
    const data = Buffer.from("x").toString("base64url");
    const other = await b.api("tenant-b", "POST", `/keys/${keys["ec-signer"]}/raw/sign`, { mechanism: "ECDSA-SHA256", data });
    expect(other.status).toBe(404);
    const fam = await b.api("tenant-a", "POST", `/keys/${keys["ec-signer"]}/raw/sign`, { mechanism: "RSA-PKCS", data });
    expect(fam.status).toBe(400);
    expect(fam.body.error.code).toBe("mechanism_not_allowed");
    const stale = await b.api("tenant-a", "POST", `/keys/${keys["ec-signer"]}/raw/sign`, { mechanism: "ECDSA-SHA256", data, version: 7 });
    expect(stale.status).toBe(409);
    expect(stale.body.error.code).toBe("key_version_not_current");
    const digest = await b.api("tenant-a", "POST", `/keys/${keys["ec-signer"]}/raw/sign`, { mechanism: "ECDSA", data: Buffer.alloc(20).toString("base64url") });
    expect(digest.status).toBe(400);
  });

  test("raw ECDSA verifies with node's verifier (IEEE P1363 r||s); a flipped bit is signature_invalid", async () => {
    const data = Buffer.from("raw bytes");
    const s = await b.api("tenant-a", "POST", `/keys/${keys["ec-signer"]}/raw/sign`, { mechanism: "ECDSA-SHA256", data: data.toString("base64url") });
    expect(s.status).toBe(200);
    const sig = Buffer.from(s.body.signature, "base64url");
    expect(nodeVerify("sha256", data, { key: await publicPem("tenant-a", keys["ec-signer"]!), dsaEncoding: "ieee-p1363" }, sig)).toBe(true);
    sig[5]! ^= 1;
    const v = await b.api("tenant-a", "POST", `/keys/${keys["ec-signer"]}/raw/verify`, { mechanism: "ECDSA-SHA256", data: data.toString("base64url"), signature: sig.toString("base64url") });
    expect(v.status).toBe(400);
    expect(v.body.error.code).toBe("signature_invalid");
  });

  test("AES-GCM: the caller's IV and AAD; a wrong AAD is decryption_failed", async () => {
    const iv = Buffer.alloc(12, 7).toString("base64url");
    const aad = Buffer.from("hdr").toString("base64url");
    const e = await b.api("tenant-a", "POST", `/keys/${keys.gcm}/raw/encrypt`, { mechanism: "AES-GCM", plaintext: Buffer.from("gcm data").toString("base64url"), iv, aad });
    expect(e.status).toBe(200);
    expect(Buffer.from(e.body.ciphertext, "base64url").length).toBe(8 + 16);
    const d = await b.api("tenant-a", "POST", `/keys/${keys.gcm}/raw/decrypt`, { mechanism: "AES-GCM", ciphertext: e.body.ciphertext, iv, aad });
    expect(Buffer.from(d.body.plaintext, "base64url").toString()).toBe("gcm data");
    const bad = await b.api("tenant-a", "POST", `/keys/${keys.gcm}/raw/decrypt`, { mechanism: "AES-GCM", ciphertext: e.body.ciphertext, iv, aad: "eHh4" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("decryption_failed");
  });

  test("mutated bodies get a 4xx or 200, never a 5xx", async () => {
    const token = await b.issuer.mint({ tenant: "tenant-a", scope: "kms:sign kms:verify kms:encrypt kms:decrypt" });
    const caPem = readFileSync(b.trustBundle, "utf8");
    const data = Buffer.from("fuzz").toString("base64url");
    const seeds = {
      sign: [keys["ec-signer"], { mechanism: "ECDSA-SHA256", data, version: 1 }],
      verify: [keys["pss-signer"], { mechanism: "RSA-PSS", data: Buffer.alloc(32).toString("base64url"), signature: Buffer.alloc(256).toString("base64url"), pss: { hash: "SHA-256", salt_length: 32 } }],
      encrypt: [keys.gcm, { mechanism: "AES-GCM", plaintext: data, iv: Buffer.alloc(12).toString("base64url"), aad: data }],
      decrypt: [keys.oaep, { mechanism: "RSA-OAEP", ciphertext: Buffer.alloc(256).toString("base64url"), hash: "SHA-256" }],
    } as const;
    let seedNo = 0x9_11;
    for (const [route, [id, seed]] of Object.entries(seeds)) {
      const r = rng(seedNo++);
      const cases = Array.from({ length: 150 }, () => mutateJson(seed, r));
      const send = (body: string) =>
        fetch(`${b.publicUrl}${API}/keys/${id}/raw/${route}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body, tls: { ca: caPem } } as RequestInit);
      const { statuses } = await fuzz(cases, send, { describe: (body) => `${route} ${body}`, concurrency: 8, maxMs: 120_000 });
      expect([...statuses.keys()].some((x) => x >= 400 && x < 500)).toBe(true);
    }
  }, 600_000);
});
