/**
 * Issue 21 (1): sm-kms's gRPC API (supacrypt.v1.KeyService on `server.grpc_port`) with mutual
 * TLS, called by clients nobody here wrote: `buf curl` (npm @bufbuild/buf, through server
 * reflection and through the .proto files) and Python's grpcio (Debian python3-grpcio, message
 * classes compiled at run time by python3-grpc-tools).
 *
 * Client certificates come from the suite CA the service trusts and are mapped by
 * `mtls.principals`: tenant A and tenant B with every kms scope, a verify-only certificate of
 * tenant A, and one the mapping does not name. A certificate from another CA, or none, fails the
 * handshake. Keys made over gRPC are the REST API's keys (same domain): a JWS signed over gRPC
 * verifies over REST and with the SPKI GetPublicKey returns.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { pythonWith } from "../support/python.ts";
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createSuiteCa, DirectoryStore, loadOrCreateSuiteCa, suiteCaSealerFromFiles, type SuiteCa } from "../../src/pki/index.ts";
import { PROTO_ROOT } from "../../src/service/grpc-listener.ts";
import { tempDir } from "../support/service.ts";
import { resolveConfig } from "../../src/service/service.ts";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { clientCertificate, type ClientCertificateFiles } from "../support/tls.ts";
import { startKms, type Kms } from "./harness.ts";

const ALL = ["kms:admin", "kms:encrypt", "kms:decrypt", "kms:sign", "kms:verify", "kms:mac"];
const BUF = join(import.meta.dir, "..", "..", "node_modules", ".bin", "buf");
/** A python3 with Debian's python3-grpcio (python3-grpc-tools compiles the messages at test time). */
const PYTHON = pythonWith("grpc_tools") ?? "python3";
const SVC = "supacrypt.v1.KeyService";

let kms: Kms;
let root: string;
let address: string;
type Cert = ClientCertificateFiles;
const certs: Record<"a" | "b" | "reader" | "nobody" | "foreign", Cert> = {} as never;

const clientCert = (ca: SuiteCa, name: string, uri: string) => clientCertificate(ca, root, name, { uris: [uri] });

/** Runs a tool without blocking the event loop (the service answers in this process). */
async function run(cmd: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(), 120_000);
  const [stdout, stderr, status] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { status, stdout, stderr };
}

/** `buf curl` of one method as `who` (reflection unless `schema`); the answer's JSON, or the error's. */
async function bufCurl(who: Cert | undefined, method: string, body: unknown, opts: { schema?: boolean; verbose?: boolean } = {}) {
  const args = [BUF, "curl", "--protocol", "grpc", "--cacert", kms.svc.trustBundlePath, "--emit-defaults"];
  if (who) args.push("--cert", who.certFile, "--key", who.keyFile);
  if (opts.schema) args.push("--schema", PROTO_ROOT);
  if (opts.verbose) args.push("-v");
  args.push("-d", JSON.stringify(body), `https://${address}/${method.includes("/") ? method : `${SVC}/${method}`}`);
  const r = await run(args);
  // An answer is printed on stdout, an error (as JSON) on stderr after any -v lines.
  const text = r.stdout.trim() || r.stderr.split("\n").filter((l) => !l.startsWith("buf: ")).join("\n").trim();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

beforeAll(async () => {
  root = tempDir("cryptoutil-grpc-");
  kms = await startKms(
    (c) => {
      c.server.grpc_port = 0;
      c.mtls.principals = [
        { uri: "spiffe://cryptoutil/client/tenant-a", tenant: "tenant-a", scopes: ALL },
        { uri: "spiffe://cryptoutil/client/tenant-b", tenant: "tenant-b", scopes: ALL },
        { uri: "spiffe://cryptoutil/client/reader", tenant: "tenant-a", scopes: ["kms:verify"] },
      ];
    },
    { root },
  );
  address = kms.svc.grpcAddress!;
  const suite = (await loadOrCreateSuiteCa({ store: new DirectoryStore(join(root, "suite-ca")), sealer: await suiteCaSealerFromFiles([join(root, "dev-unseal.secret")]) })).ca;
  certs.a = await clientCert(suite, "tenant-a", "spiffe://cryptoutil/client/tenant-a");
  certs.b = await clientCert(suite, "tenant-b", "spiffe://cryptoutil/client/tenant-b");
  certs.reader = await clientCert(suite, "reader", "spiffe://cryptoutil/client/reader");
  certs.nobody = await clientCert(suite, "nobody", "spiffe://cryptoutil/client/nobody");
  // The same name, from a CA the service does not trust.
  certs.foreign = await clientCert(await createSuiteCa(), "foreign", "spiffe://cryptoutil/client/tenant-a");
});
afterAll(async () => {
  await kms?.stop();
});

const b64 = (b: Uint8Array | string) => Buffer.from(b).toString("base64");

/**
 * The `reason` of the google.rpc.ErrorInfo in a buf curl error's details (buf prints a detail
 * it cannot resolve as base64 protobuf: field 1 is the reason, field 2 the domain).
 */
function reasonOf(error: { details?: Array<{ type: string; value: unknown }> }): string | undefined {
  const d = error?.details?.[0];
  if (!d || d.type !== "google.rpc.ErrorInfo") return undefined;
  if (typeof d.value === "object") return (d.value as { reason?: string }).reason;
  const b = Buffer.from(String(d.value), "base64");
  const fields: Record<number, string> = {};
  for (let i = 0; i < b.length; ) {
    const tag = b[i]!;
    const len = b[i + 1]!;
    fields[tag >> 3] = b.subarray(i + 2, i + 2 + len).toString();
    i += 2 + len;
  }
  expect(fields[2]).toBe("cryptoutil");
  return fields[1];
}

describe("buf curl, every method with tenant A's certificate", () => {
  const ids: Record<string, string> = {};

  test("reflection lists KeyService's eleven methods, health and reflection", async () => {
    const r = await run([BUF, "curl", "--protocol", "grpc", "--cacert", kms.svc.trustBundlePath, "--cert", certs.a.certFile, "--key", certs.a.keyFile, "--list-methods", `https://${address}`]);
    expect(r.status).toBe(0);
    const methods = r.stdout.trim().split("\n");
    for (const m of ["ListKeys", "GetPublicKey", "GenerateKey", "ImportKey", "Sign", "Verify", "Encrypt", "Decrypt", "Wrap", "Unwrap", "Random"]) expect(methods).toContain(`${SVC}/${m}`);
    expect(methods).toContain("grpc.health.v1.Health/Check");
  });

  test("GenerateKey, ListKeys; the key is the REST API's key", async () => {
    for (const [name, algorithm] of [["signer", "ES256"], ["box", "A256GCM"], ["kek", "A256KW"]] as const) {
      const r = await bufCurl(certs.a, "GenerateKey", { name, algorithm, tags: ["grpc"] });
      expect(r.status).toBe(0);
      expect(r.json).toMatchObject({ name, algorithm, status: "enabled", currentVersion: 1 });
      ids[name] = r.json.id;
    }
    const listed = await bufCurl(certs.a, "ListKeys", { tag: "grpc" });
    expect(listed.json.keys.map((k: { name: string }) => k.name).sort()).toEqual(["box", "kek", "signer"]);
    const rest = await kms.req("GET", `/keys/${ids.signer}`);
    expect(rest.status).toBe(200);
    expect(rest.body.algorithm).toBe("ES256");
  });

  test("Sign, Verify, GetPublicKey: the JWS verifies over REST and with the returned SPKI", async () => {
    const payload = new TextEncoder().encode("signed over gRPC");
    const signed = await bufCurl(certs.a, "Sign", { key_id: ids.signer, payload: b64(payload) });
    expect(signed.status).toBe(0);
    expect(signed.json.kid).toBe(`${ids.signer}.v1`);
    const jws: string = signed.json.jws;
    expect(Buffer.from(signed.json.signature, "base64").length).toBe(64);
    expect((await bufCurl(certs.a, "Verify", { key_id: ids.signer, jws })).json).toEqual({ valid: true, kid: `${ids.signer}.v1` });
    expect((await kms.req("POST", `/keys/${ids.signer}/verify`, { jws })).body).toEqual({ valid: true, kid: `${ids.signer}.v1` });

    const pub = await bufCurl(certs.a, "GetPublicKey", { key_id: ids.signer });
    expect(pub.json).toMatchObject({ kid: `${ids.signer}.v1`, algorithm: "ES256" });
    expect(JSON.parse(pub.json.jwk_json ?? pub.json.jwkJson)).toMatchObject({ kty: "EC", crv: "P-256", use: "sig" });
    const spki = createPublicKey({ key: Buffer.from(pub.json.spki, "base64"), format: "der", type: "spki" });
    const [h, p, s] = jws.split(".");
    expect(nodeVerify("sha256", Buffer.from(`${h}.${p}`), { key: spki, dsaEncoding: "ieee-p1363" }, Buffer.from(s!, "base64url"))).toBe(true);

    const tampered = `${h}.${p}.${s!.slice(0, -4)}AAAA`;
    const bad = await bufCurl(certs.a, "Verify", { key_id: ids.signer, jws: tampered });
    expect(bad.status).not.toBe(0);
    expect(bad.json).toMatchObject({ code: "invalid_argument" });
    expect(reasonOf(bad.json)).toBe("signature_invalid");
  });

  test("Encrypt, Decrypt with a context; a JWE made over REST decrypts over gRPC", async () => {
    const context = [{ key: "order", value: "42" }];
    const enc = await bufCurl(certs.a, "Encrypt", { key_id: ids.box, plaintext: b64("hello, gRPC"), context });
    expect(enc.status).toBe(0);
    const dec = await bufCurl(certs.a, "Decrypt", { key_id: ids.box, jwe: enc.json.jwe, context });
    expect(Buffer.from(dec.json.plaintext, "base64").toString()).toBe("hello, gRPC");
    const wrong = await bufCurl(certs.a, "Decrypt", { key_id: ids.box, jwe: enc.json.jwe, context: [{ key: "order", value: "43" }] });
    expect(reasonOf(wrong.json)).toBe("decryption_failed");
    const rest = await kms.req("POST", `/keys/${ids.box}/encrypt`, { plaintext: Buffer.from("from REST").toString("base64url"), context: { a: "1" } });
    const back = await bufCurl(certs.a, "Decrypt", { key_id: ids.box, jwe: rest.body.jwe, context: [{ key: "a", value: "1" }] });
    expect(Buffer.from(back.json.plaintext, "base64").toString()).toBe("from REST");
  });

  test("Wrap, Unwrap, Random, ImportKey (through the .proto files instead of reflection)", async () => {
    const material = crypto.getRandomValues(new Uint8Array(32));
    const wrapped = await bufCurl(certs.a, "Wrap", { key_id: ids.kek, key_material: b64(material) }, { schema: true });
    expect(wrapped.status).toBe(0);
    expect(wrapped.json.wrapped_key ?? wrapped.json.wrappedKey).toMatch(/^eyJ/);
    const un = await bufCurl(certs.a, "Unwrap", { key_id: ids.kek, wrapped_key: wrapped.json.wrapped_key ?? wrapped.json.wrappedKey }, { schema: true });
    expect(Buffer.from(un.json.key_material ?? un.json.keyMaterial, "base64")).toEqual(Buffer.from(material));
    const random = await bufCurl(certs.a, "Random", { bytes: 32 }, { schema: true });
    expect(Buffer.from(random.json.random, "base64").length).toBe(32);

    const { privateKey } = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    const imported = await bufCurl(certs.a, "ImportKey", { name: "imported", algorithm: "ES256", jwk_json: JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d }) }, { schema: true });
    expect(imported.status).toBe(0);
    expect(imported.json).toMatchObject({ name: "imported", importAllowed: true });
    const signed = await bufCurl(certs.a, "Sign", { key_id: imported.json.id, payload: b64("x") }, { schema: true });
    const pub = await crypto.subtle.importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    const [h, p, s] = (signed.json.jws as string).split(".");
    expect(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, Buffer.from(s!, "base64url"), new TextEncoder().encode(`${h}.${p}`))).toBe(true);
  });

  test("tenant B's certificate cannot use tenant A's key: NOT_FOUND not_found, in metadata and details", async () => {
    for (const [method, body] of [
      ["Sign", { key_id: ids.signer, payload: b64("x") }],
      ["GetPublicKey", { key_id: ids.signer }],
      ["Encrypt", { key_id: ids.box, plaintext: b64("x") }],
    ] as const) {
      const r = await bufCurl(certs.b, method, body, { verbose: true });
      expect(r.status).not.toBe(0);
      expect(r.json).toMatchObject({ code: "not_found" });
      expect(reasonOf(r.json)).toBe("not_found");
      expect(r.stderr.toLowerCase()).toContain("cryptoutil-error-code: not_found");
    }
    expect((await bufCurl(certs.b, "ListKeys", {})).json.keys).toEqual([]);
  });

  test("a certificate without the scope is PERMISSION_DENIED insufficient_scope; an unmapped one forbidden", async () => {
    const r = await bufCurl(certs.reader, "Sign", { key_id: ids.signer, payload: b64("x") });
    expect(r.json).toMatchObject({ code: "permission_denied" });
    expect(reasonOf(r.json)).toBe("insufficient_scope");
    const n = await bufCurl(certs.nobody, "Random", { bytes: 8 });
    expect(reasonOf(n.json)).toBe("forbidden");
  });

  test("no client certificate, or one from another CA, is refused by the handshake", async () => {
    for (const who of [undefined, certs.foreign]) {
      const r = await bufCurl(who, "Random", { bytes: 8 });
      expect(r.status).not.toBe(0);
      expect(r.stdout + r.stderr).not.toContain('"random"');
      expect(r.json?.code ?? "unavailable").toBe("unavailable");
    }
  });
});

describe("configuration and the REST twin", () => {
  test("server.grpc_port on a service without a gRPC API stops the start with config_invalid", () => {
    expect(() => resolveConfig(learnPs, { argv: ["--server.grpc_port=0"], env: {} })).toThrow(/server\.grpc_port: learn-ps has no gRPC API/);
  });

  test("POST /keys/import (the domain operation gRPC's ImportKey uses) over REST: 201, import allowed; bad JWK 400", async () => {
    const { publicKey } = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", publicKey);
    const r = await kms.req("POST", "/keys/import", { name: "rest-imported", algorithm: "ES256", jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: "rest-imported", algorithm: "ES256", import_allowed: true });
    const bad = await kms.req("POST", "/keys/import", { name: "rest-bad", algorithm: "ES256", jwk: { kty: "EC", crv: "P-256", x: "AA", y: "AA" } });
    expect(bad.status).toBe(400);
  });
});

describe("Python grpcio", () => {
  test("calls every method with a client certificate; tenant, CA and certificate checks hold", async () => {
    const r = await run([PYTHON, join(import.meta.dir, "grpc_client.py"), PROTO_ROOT, address, kms.svc.trustBundlePath, certs.a.certFile, certs.a.keyFile, certs.b.certFile, certs.b.keyFile, certs.foreign.certFile, certs.foreign.keyFile]);
    if (r.status !== 0) throw new Error(`python client failed (needs Debian python3-grpcio and python3-grpc-tools): ${r.stderr.slice(-2000)}`);
    const seen = JSON.parse(r.stdout);
    expect(seen.generate).toEqual({ algorithm: "ES256", purpose: "sign", version: 1 });
    expect(seen.list).toEqual(["py-signer"]);
    expect(seen.public_key.jwk).toMatchObject({ kty: "EC", crv: "P-256" });
    expect(seen.sign.signature_len).toBe(64);
    expect(seen.verify).toBe(true);
    expect(seen.verify_tampered).toMatchObject({ status: "INVALID_ARGUMENT", code: "signature_invalid" });
    expect(seen.import).toEqual({ algorithm: "ES256", import_allowed: true });
    expect(seen.decrypt).toBe("secret");
    expect(seen.decrypt_wrong_context).toMatchObject({ status: "INVALID_ARGUMENT", code: "decryption_failed" });
    expect(seen.unwrap).toBe(true);
    expect(seen.random_len).toBe(48);
    expect(seen.b_sign_a).toMatchObject({ status: "NOT_FOUND", code: "not_found" });
    expect(seen.b_public_key_a).toMatchObject({ status: "NOT_FOUND", code: "not_found" });
    expect(seen.b_list).toEqual([]);
    expect(seen.no_cert.status).toBe("UNAVAILABLE");
    expect(seen.foreign_cert.status).toBe("UNAVAILABLE");
    expect(seen.bad_request).toMatchObject({ status: "INVALID_ARGUMENT", code: "validation_failed" });
  });
});

/** A grpc-js client sending raw bytes as the request of `method`, as tenant A. */
function rawClient() {
  const creds = grpc.credentials.createSsl(Buffer.from(kms.svc.ca), Buffer.from(certs.a.key), Buffer.from(certs.a.cert));
  const client = new grpc.Client(address, creds, { "grpc.max_send_message_length": 8 << 20, "grpc.ssl_target_name_override": "localhost" });
  const call = (method: string, bytes: Buffer) =>
    new Promise<{ code: number; errorCode?: string; details?: string }>((resolve) => {
      client.makeUnaryRequest(`/${SVC}/${method}`, (b: Buffer) => b, (b: Buffer) => b, bytes, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err) => {
        if (!err) return resolve({ code: 0 });
        resolve({ code: err.code, errorCode: err.metadata?.get("cryptoutil-error-code")[0]?.toString(), ...(err.code === grpc.status.UNAVAILABLE && !err.metadata?.get("cryptoutil-error-code").length ? { details: err.details } : {}) });
      });
    });
  return { call, close: () => client.close() };
}

describe("bad messages", () => {
  test("a message that is not protobuf is INVALID_ARGUMENT malformed_message; an oversized one RESOURCE_EXHAUSTED", async () => {
    const c = rawClient();
    try {
      // Field 2 (bytes) whose length runs past the end; a group start with no end.
      expect(await c.call("Sign", Buffer.from([0x12, 0x05, 0x01]))).toEqual({ code: grpc.status.INVALID_ARGUMENT, errorCode: "malformed_message" });
      expect(await c.call("Random", Buffer.from([0x0b]))).toEqual({ code: grpc.status.INVALID_ARGUMENT, errorCode: "malformed_message" });
      // A varint of eleven bytes.
      expect(await c.call("Sign", Buffer.from([0x18, ...Array(10).fill(0xff), 0x01]))).toEqual({ code: grpc.status.INVALID_ARGUMENT, errorCode: "malformed_message" });
      const big = await c.call("Encrypt", Buffer.concat([Buffer.from([0x12, 0x80, 0x80, 0x80, 0x01]), Buffer.alloc(2 << 20)]));
      expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      // A plaintext over the REST API's 64 KiB limit: the same validation, the same code.
      const over = await c.call("Encrypt", Buffer.concat([Buffer.from([0x0a, 0x01, 0x78, 0x12, 0x81, 0x80, 0x04]), Buffer.alloc(65_537)]));
      expect(over).toEqual({ code: grpc.status.INVALID_ARGUMENT, errorCode: "validation_failed" });
      // Still serving.
      expect((await c.call("Random", Buffer.from([0x08, 0x10]))).code).toBe(0);
    } finally {
      c.close();
    }
  });

  test("3,000 mutated messages get clean status codes, never INTERNAL, and the service stays up", async () => {
    const { mutateDer, pool, rng } = await import("../support/fuzz.ts");
    const key = (await kms.req("POST", "/keys", { name: "fuzz-signer", algorithm: "ES256" })).body.id as string;
    const box = (await kms.req("POST", "/keys", { name: "fuzz-box", algorithm: "A256GCM" })).body.id as string;
    const enc = (await kms.req("POST", `/keys/${box}/encrypt`, { plaintext: "aGk" })).body.jwe as string;
    const field = (n: number, s: string | Buffer) => {
      const b = Buffer.from(s);
      return Buffer.concat([Buffer.from([(n << 3) | 2, ...varint(b.length)]), b]);
    };
    const seeds: Array<[string, Buffer]> = [
      ["Sign", Buffer.concat([field(1, key), field(2, "payload"), Buffer.from([0x18, 0x01])])],
      ["Decrypt", Buffer.concat([field(1, box), field(2, enc), field(3, Buffer.concat([field(1, "k"), field(2, "v")]))])],
      ["GenerateKey", Buffer.concat([field(1, "fz"), field(2, "ES256"), field(4, "tag")])],
      ["ListKeys", Buffer.concat([field(1, "sign"), Buffer.from([0x20, 0x05])])],
      ["Random", Buffer.from([0x08, 0x20])],
      ["ImportKey", Buffer.concat([field(1, "imp"), field(2, "ES256"), field(3, '{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}')])],
    ];
    const r = rng(21);
    const cases = Array.from({ length: 3000 }, (_, i) => {
      const [method, seed] = seeds[i % seeds.length]!;
      return { method, bytes: Buffer.from(mutateDer(seed, r)) };
    });
    const c = rawClient();
    const codes = new Map<number, number>();
    const internal: string[] = [];
    try {
      await pool(cases, async ({ method, bytes }) => {
        const res = await c.call(method, bytes);
        codes.set(res.code, (codes.get(res.code) ?? 0) + 1);
        if (res.code === grpc.status.INTERNAL || res.code === grpc.status.UNKNOWN || (res.code !== 0 && !res.errorCode)) internal.push(`${method} ${bytes.toString("hex")} -> ${res.code}`);
      }, 8);
      expect(internal).toEqual([]);
      expect((await c.call("Random", Buffer.from([0x08, 0x10]))).code).toBe(0);
    } finally {
      c.close();
    }
    expect([...codes.values()].reduce((a, b) => a + b, 0)).toBe(3000);
  });
});

/** An HTTP/2 connection to the gRPC port as tenant A, for requests framed by hand: each answer's gRPC status, error code and body. */
async function h2Client() {
  const { connect } = await import("node:http2");
  const session = connect(`https://${address}`, { ca: kms.svc.ca, cert: certs.a.cert, key: certs.a.key, servername: "localhost" });
  const call = (path: string, body: Buffer, headers: Record<string, string> = {}) =>
    new Promise<{ grpcStatus?: string; errorCode?: string; body: Buffer; fields: Record<string, unknown> }>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      const fields: Record<string, unknown> = {};
      const chunks: Buffer[] = [];
      req.on("response", (h) => Object.assign(fields, h));
      req.on("trailers", (t) => Object.assign(fields, t));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", reject);
      req.on("end", () => resolve({ grpcStatus: fields["grpc-status"] as string | undefined, errorCode: fields["cryptoutil-error-code"] as string | undefined, body: Buffer.concat(chunks), fields }));
      req.end(body);
    });
  return { call, session, close: () => session.close() };
}
/** A gRPC length-prefixed message: the compressed flag, the length (big-endian), the bytes. */
function framed(msg: Buffer, flag = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flag;
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

describe("the direct path for unary calls", () => {
  test("KeyService's unary calls take it; framing errors are INVALID_ARGUMENT malformed_message; the rest goes to grpc-js", async () => {
    expect(kms.svc.grpcDirect).toBe(true);
    const c = await h2Client();
    const h2 = c.call;
    const random = `/${SVC}/Random`;
    // Random{bytes: 16}: the answer is one uncompressed message holding 16 bytes (field 1).
    const ok = await h2(random, framed(Buffer.from([0x08, 0x10])));
    expect(ok.grpcStatus).toBe("0");
    expect([...ok.body.subarray(0, 7)]).toEqual([0, 0, 0, 0, 18, 0x0a, 16]);
    expect(ok.body.length).toBe(5 + 18);
    // Only what gRPC needs: no date header, no message with an OK status.
    expect(ok.fields["content-type"]).toBe("application/grpc+proto");
    expect(ok.fields.date).toBeUndefined();
    expect(ok.fields["grpc-message"]).toBeUndefined();
    const malformed = { grpcStatus: "3", errorCode: "malformed_message" };
    // No message, two messages, a length running past the end, the compressed flag without an encoding.
    expect(await h2(random, Buffer.alloc(0))).toMatchObject(malformed);
    expect(await h2(random, Buffer.concat([framed(Buffer.from([0x08, 0x10])), framed(Buffer.from([0x08, 0x10]))]))).toMatchObject(malformed);
    expect(await h2(random, Buffer.from([0, 0, 0, 0, 10, 0x08]))).toMatchObject(malformed);
    expect(await h2(random, Buffer.from([0, 0, 0]))).toMatchObject(malformed);
    expect(await h2(random, framed(Buffer.from([0x08, 0x10]), 1))).toMatchObject(malformed);
    // A gzip-compressed message is grpc-js's to decompress; health and unknown methods are grpc-js's too.
    const { gzipSync } = await import("node:zlib");
    expect((await h2(random, framed(gzipSync(Buffer.from([0x08, 0x10])), 1), { "grpc-encoding": "gzip" })).grpcStatus).toBe("0");
    expect((await h2("/grpc.health.v1.Health/Check", framed(Buffer.alloc(0)))).grpcStatus).toBe("0");
    expect((await h2(`/${SVC}/NoSuchMethod`, framed(Buffer.alloc(0)))).grpcStatus).toBe("12");
    c.close();
  });

  test("calls in flight together on one connection each get their own answer; calls the client cancels leave the others whole", async () => {
    const c = await h2Client();
    try {
      // Random{bytes: n} for n = 1..64 at once: answers that leave together must each reach their own call.
      const sizes = Array.from({ length: 64 }, (_, i) => i + 1);
      const answers = await Promise.all(sizes.map((n) => c.call(`/${SVC}/Random`, framed(Buffer.from([0x08, n])))));
      answers.forEach((a, i) => {
        expect(a.grpcStatus).toBe("0");
        expect([...a.body.subarray(0, 7)]).toEqual([0, 0, 0, 0, 2 + sizes[i]!, 0x0a, sizes[i]!]);
        expect(a.body.length).toBe(7 + sizes[i]!);
      });
      // Every other call of a burst is reset by the client right after its request: the rest are answered, each its own.
      const { constants } = await import("node:http2");
      const kept: Promise<{ grpcStatus?: string; body: Buffer }>[] = [];
      for (let n = 1; n <= 32; n++) {
        if (n % 2 === 0) {
          kept.push(c.call(`/${SVC}/Random`, framed(Buffer.from([0x08, n]))));
          continue;
        }
        const req = c.session.request({ ":method": "POST", ":path": `/${SVC}/Random`, "content-type": "application/grpc", te: "trailers" });
        req.on("error", () => {});
        req.end(framed(Buffer.from([0x08, n])), () => req.close(constants.NGHTTP2_CANCEL));
      }
      (await Promise.all(kept)).forEach((r, i) => {
        expect(r.grpcStatus).toBe("0");
        expect(r.body.length).toBe(7 + 2 * (i + 1));
      });
      expect((await c.call(`/${SVC}/Random`, framed(Buffer.from([0x08, 0x10])))).grpcStatus).toBe("0");
    } finally {
      c.close();
    }
  });

  test("600 mutated framings (prefix and message bytes alike) get a status with a stable code, never INTERNAL; the service stays up", async () => {
    const { mutateDer, pool, rng } = await import("../support/fuzz.ts");
    const r = rng(2121);
    const seeds: Array<[string, Buffer]> = [
      ["Random", framed(Buffer.from([0x08, 0x10]))],
      ["Sign", framed(Buffer.concat([Buffer.from([0x0a, 0x03]), Buffer.from("abc"), Buffer.from([0x12, 0x01, 0x78])]))],
      ["ListKeys", framed(Buffer.from([0x20, 0x05]))],
    ];
    const cases = Array.from({ length: 600 }, (_, i) => {
      const [method, seed] = seeds[i % seeds.length]!;
      return { method, bytes: Buffer.from(mutateDer(seed, r)) };
    });
    const c = await h2Client();
    const bad: string[] = [];
    try {
      await pool(cases, async ({ method, bytes }) => {
        const res = await c.call(`/${SVC}/${method}`, bytes);
        const ok = res.grpcStatus === "0" || (res.grpcStatus !== undefined && !["2", "13"].includes(res.grpcStatus) && res.errorCode !== undefined);
        if (!ok) bad.push(`${method} ${bytes.toString("hex")} -> ${res.grpcStatus} ${res.errorCode}`);
      }, 8);
      expect(bad).toEqual([]);
      expect((await c.call(`/${SVC}/Random`, framed(Buffer.from([0x08, 0x10])))).grpcStatus).toBe("0");
    } finally {
      c.close();
    }
  });
});

const adminPost = () => ({ method: "POST", headers: { authorization: `Bearer ${kms.svc.adminToken}` } });

describe("sealed barrier and health", () => {
  test("health says SERVING; sealed, calls are UNAVAILABLE sealed and health NOT_SERVING; unsealed, back", async () => {
    expect((await bufCurl(certs.a, "grpc.health.v1.Health/Check", { service: SVC })).json).toEqual({ status: "SERVING" });
    expect((await kms.svc.admin("/admin/v1/barrier/seal", adminPost())).status).toBe(200);
    try {
      const r = await bufCurl(certs.a, "Random", { bytes: 8 });
      expect(r.json).toMatchObject({ code: "unavailable" });
      expect(reasonOf(r.json)).toBe("sealed");
      expect((await bufCurl(certs.a, "grpc.health.v1.Health/Check", {})).json).toEqual({ status: "NOT_SERVING" });
    } finally {
      expect((await kms.svc.admin("/admin/v1/barrier/unseal", adminPost())).status).toBe(200);
    }
    expect((await bufCurl(certs.a, "Random", { bytes: 8 })).status).toBe(0);
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
