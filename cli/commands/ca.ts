/**
 * `ca ...`: certificates from pki-ca (key and CSR made here, the CA signs), requests,
 * revocation, CRLs, OCSP checks, profiles, and the offline root ceremony; and the
 * GigVault-style aliases `cert create|revoke`, `csr submit`, `key generate`.
 */
import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import * as S from "../../schemas/pki-ca.ts";
import { checked, collect, emit, fields, intOption, Session, sub, table } from "../command.ts";
import { FailedError, UsageError } from "../errors.ts";
import { expectJson } from "../http.ts";
import { privateDir } from "../config.ts";
import { mustBeNew, readText, writeOutput, writeSecretFile } from "../io.ts";
import { certificatesIn, generateKeyPair, keyAlgorithm, makeCsr, ocspRequest, privateKeyPem, publicKeyPem, sanOf, serialOf, validityDays, verifyOcspResponse, type KeySpec } from "../pki.ts";

type Certificate = { serial: string; subject: string; sans: string[]; profile: string; issuing_ca: string; status: string; not_before: string; not_after: string; revoked_at: string | null; revocation_reason: string | null; certificate_pem: string; chain_pem: string };
type CertRequest = { id: string; status: string; profile: string; subject: string; sans: string[]; validity_days: number; serial: string | null; created_at: string; reasons: Array<{ code: string; message: string }> };
type Submitted = { status: "issued"; request_id: string; certificate: Certificate } | { status: "pending"; request: CertRequest };

const DEFAULT_PROFILE = "tls-server";

interface KeyFlags {
  kty: string;
  curve?: string;
  size?: number;
  force?: boolean;
}

const keyOptions = (c: Command) =>
  c
    .option("--kty <type>", "key type: EC, RSA or OKP", "EC")
    .option("--curve <curve>", "P-256 (default) or P-384 for EC, Ed25519 for OKP")
    .option("--size <bits>", "RSA modulus: 2048, 3072 (default) or 4096", intOption("--size", 8192))
    .option("--force", "replace existing output files");

const spec = (o: KeyFlags): KeySpec => ({ kty: o.kty.toUpperCase() as KeySpec["kty"], curve: o.curve, size: o.size });

const certFields = (c: Certificate, extra: Record<string, string> = {}) =>
  fields({ serial: c.serial, subject: c.subject, sans: c.sans, profile: c.profile, "issuing CA": c.issuing_ca, status: c.status, "not before": c.not_before, "not after": c.not_after, "revoked at": c.revoked_at ?? undefined, reason: c.revocation_reason ?? undefined, ...extra });

const requestFields = (r: CertRequest) => fields({ "request id": r.id, status: r.status, profile: r.profile, subject: r.subject, sans: r.sans, "validity (days)": r.validity_days, serial: r.serial, created: r.created_at });

/** Submits a CSR and writes the certificate and chain to `crt` when it is issued at once. */
async function submit(cmd: Command, csr: string, profile: string, validity: number | undefined, crt: string | undefined, extra: Record<string, string> = {}): Promise<Submitted> {
  const body = checked(S.SubmitCertificate, { csr, profile, validity_days: validity });
  const r = await Session.open(cmd).api("pki-ca").api<Submitted>("POST", "/certificates", body);
  if (r.status === "issued" && crt) writeOutput(crt, r.certificate.certificate_pem + r.certificate.chain_pem);
  emit(cmd, r, (x) =>
    x.status === "issued"
      ? certFields(x.certificate, { ...(crt ? { certificate: `${crt} (with its chain)` } : {}), ...extra })
      : `${requestFields(x.request)}\nqueued for approval: cryptoutil ca request approve ${x.request.id}${Object.entries(extra).map(([k, v]) => `\n${k}: ${v}`).join("")}`,
  );
  return r;
}

function defineCertificate(parent: Command, name: string, path: string): void {
  keyOptions(
    sub(parent, `${name} <subject> <crt> <key>`, "Get a certificate: the key pair and CSR are made here, pki-ca signs; the key is written 0600 (PKCS#8 PEM), the certificate and its chain to <crt>", [
      `${path} svc.example.com svc.crt svc.key`,
      `${path} api.example.com api.crt api.key --san api.example.com --san 10.0.0.5 --not-after 24h`,
      `${path} edge.example.com edge.crt edge.key --kty OKP --curve Ed25519 --profile tls-server`,
      `${path} demo demo.crt demo.key --profile tls-client --san demo@example.com   # sign-in at identity-idp's mTLS port`,
    ]),
  )
    .option("--san <name>", "a DNS name, IP address, e-mail, URI or upn:name@domain (repeatable; default: the subject)", collect)
    .option("--profile <name>", "the CA's profile (cryptoutil ca profile list)", DEFAULT_PROFILE)
    .option("--not-after <when>", "24h, 30d or a date such as 2027-01-01 (default: the profile's)")
    .action(async (subject: string, crt: string, keyFile: string, o: KeyFlags & { san?: string[]; profile: string; notAfter?: string }, cmd: Command) => {
      const alg = keyAlgorithm(spec(o));
      const sans = o.san ?? (safeSan(subject) ? [subject] : []);
      const validity = o.notAfter ? validityDays(o.notAfter) : undefined;
      mustBeNew(crt, o.force);
      mustBeNew(keyFile, o.force);
      const keys = await generateKeyPair(alg);
      const csr = await makeCsr(subject, sans, keys, alg);
      // The key is kept before the request goes out: a queued request can still be approved.
      writeSecretFile(keyFile, await privateKeyPem(keys), o.force);
      await submit(cmd, csr, o.profile, validity, crt, { key: `${keyFile} (${alg.describe}, PKCS#8, mode 0600)` });
    });
}

const safeSan = (s: string) => {
  try {
    sanOf(s);
    return true;
  } catch {
    return false;
  }
};

function defineCsrSubmit(parent: Command, name: string, path: string): void {
  sub(parent, `${name} <csr>`, "Submit a PKCS#10 CSR (PEM) to pki-ca", [`${path} svc.csr --out svc.crt`, `${path} client.csr --profile client --not-after 30d`])
    .option("--profile <name>", "the CA's profile", DEFAULT_PROFILE)
    .option("--not-after <when>", "24h, 30d or a date (default: the profile's)")
    .option("-o, --out <crt>", "write the certificate and its chain here when issued")
    .action(async (csrFile: string, o: { profile: string; notAfter?: string; out?: string }, cmd: Command) => {
      await submit(cmd, await readText(csrFile), o.profile, o.notAfter ? validityDays(o.notAfter) : undefined, o.out);
    });
}

function defineKeyGenerate(parent: Command, name: string, path: string): void {
  keyOptions(
    sub(parent, `${name} <key>`, "Make a key pair here: the private key to <key> (PKCS#8 PEM, 0600), the public key to --pub or stdout", [
      `${path} svc.key --pub svc.pub`,
      `${path} signing.key --kty RSA --size 4096`,
    ]),
  )
    .option("--pub <file>", "write the public key (SPKI PEM) here")
    .action(async (keyFile: string, o: KeyFlags & { pub?: string }, cmd: Command) => {
      const alg = keyAlgorithm(spec(o));
      mustBeNew(keyFile, o.force);
      if (o.pub) mustBeNew(o.pub, o.force);
      const keys = await generateKeyPair(alg);
      writeSecretFile(keyFile, await privateKeyPem(keys), o.force);
      const pub = await publicKeyPem(keys);
      if (o.pub) writeOutput(o.pub, pub);
      emit(cmd, { key: keyFile, public_key: o.pub ?? pub, type: alg.describe }, (r) => (o.pub ? `${r.type} key pair: private ${r.key} (0600), public ${r.public_key}` : pub));
    });
}

/** A serial in hex, or the serial of the certificate in a PEM file. */
async function serialArg(arg: string): Promise<string> {
  if (/^[0-9a-fA-F]{2,40}$/.test(arg) && !existsSync(arg)) return arg.toLowerCase();
  return serialOf(certificatesIn(await readText(arg), arg)[0]!);
}

function defineRevoke(parent: Command, name: string, path: string): void {
  sub(parent, `${name} <serial-or-crt>`, "Revoke a certificate, given by serial (hex) or by its PEM file", [
    `${path} svc.crt --reason keyCompromise`,
    `${path} 0190c7d26f1a5e3b9c`,
  ])
    .option("--reason <reason>", S.REVOCATION_REASON_NAMES.join(", "), "unspecified")
    .action(async (arg: string, o: { reason: string }, cmd: Command) => {
      const serial = await serialArg(arg);
      const body = checked(S.RevokeCertificate, { reason: o.reason });
      const r = await Session.open(cmd).api("pki-ca").api<Certificate>("POST", `/certificates/${serial}/revoke`, body);
      emit(cmd, r, (c) => `revoked ${c.serial} (${c.subject}) at ${c.revoked_at}: ${c.revocation_reason}`);
    });
}

function registerRequests(ca: Command): void {
  const req = sub(ca, "request", "The RA queue: requests waiting for approval", ["ca request list", "ca request approve 0190c7d2-..."]);
  sub(req, "list", "List certificate requests (pending by default)", ["ca request list", "ca request list --status rejected --json"])
    .option("--status <status>", "pending, issued or rejected", "pending")
    .option("--limit <n>", "at most this many", intOption("--limit", 500))
    .action(async (o: { status: string; limit?: number }, cmd: Command) => {
      const q = checked(S.ListRequestsQuery, { status: o.status, limit: o.limit?.toString() }, "filter");
      const r = await Session.open(cmd).api("pki-ca").api<{ items: CertRequest[] }>("GET", "/requests", undefined, { status: q.status, limit: o.limit });
      emit(cmd, r, (x) => (x.items.length === 0 ? `no ${o.status} requests` : table(["ID", "STATUS", "PROFILE", "SUBJECT", "SANS", "CREATED"], x.items.map((i) => [i.id, i.status, i.profile, i.subject, i.sans.join(","), i.created_at]))));
    });
  sub(req, "approve <id>", "Approve a queued request: the certificate is issued", ["ca request approve 0190c7d2-... --out client.crt"])
    .option("-o, --out <crt>", "write the certificate and its chain here")
    .action(async (id: string, o: { out?: string }, cmd: Command) => {
      checked(S.RequestIdParam, { id }, "request id");
      const c = await Session.open(cmd).api("pki-ca").api<Certificate>("POST", `/requests/${id}/approve`);
      if (o.out) writeOutput(o.out, c.certificate_pem + c.chain_pem);
      emit(cmd, c, (x) => certFields(x, o.out ? { certificate: o.out } : {}));
    });
  sub(req, "reject <id>", "Reject a queued request", ["ca request reject 0190c7d2-... --reason 'not our host'"])
    .requiredOption("--reason <text>", "why (kept with the request)")
    .action(async (id: string, o: { reason: string }, cmd: Command) => {
      checked(S.RequestIdParam, { id }, "request id");
      const body = checked(S.RejectRequest, { reason: o.reason });
      const r = await Session.open(cmd).api("pki-ca").api<CertRequest>("POST", `/requests/${id}/reject`, body);
      emit(cmd, r, requestFields);
    });
}

function registerRevocation(ca: Command): void {
  const crl = sub(ca, "crl", "Certificate revocation lists", ["ca crl get --out issuing.crl"]);
  sub(crl, "get", "Fetch an issuing CA's current CRL (DER to --out, else PEM on stdout)", ["ca crl get --out issuing.crl", "ca crl get --ca issuing-P-384"])
    .option("--ca <id>", "the issuing CA (default: the first; ids from GET /issuing-cas)")
    .option("-o, --out <file>", "write the DER CRL here")
    .action(async (o: { ca?: string; out?: string }, cmd: Command) => {
      const s = Session.open(cmd);
      let id = o.ca;
      if (!id) {
        const cas = await s.api("pki-ca").api<{ items: Array<{ id: string }> }>("GET", "/issuing-cas");
        id = cas.items[0]?.id;
        if (!id) throw new FailedError("pki-ca has no issuing CA");
      }
      if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new UsageError("--ca is an issuing CA id such as issuing-P-256");
      const res = await s.anonymous("pki-ca").raw("GET", `/pki/crl/${id}.crl`);
      if (!res.ok) await expectJson(res);
      const der = new Uint8Array(await res.arrayBuffer());
      if (o.out) {
        writeOutput(o.out, der);
        emit(cmd, { ca: id, out: o.out, bytes: der.length }, (r) => `CRL of ${r.ca} (${r.bytes} bytes) -> ${r.out}`);
      } else {
        const { X509Crl } = await import("../../src/pki/x509.ts");
        const pem = new X509Crl(der).toString("pem");
        emit(cmd, { ca: id, pem }, (r) => r.pem);
      }
    });

  const ocsp = sub(ca, "ocsp", "Online certificate status (RFC 6960)", ["ca ocsp check svc.crt"]);
  sub(ocsp, "check <crt>", "Ask pki-ca's OCSP responder about a certificate and verify the signed answer against the CA chain: prints good, revoked or unknown", [
    "ca ocsp check svc.crt                       # the file written by ca certificate holds the chain",
    "ca ocsp check leaf.pem --issuer issuing-ca.pem",
  ])
    .option("--issuer <file>", "the issuing CA certificate (default: the next certificate in <crt>)")
    .action(async (crt: string, o: { issuer?: string }, cmd: Command) => {
      const certs = certificatesIn(await readText(crt), crt);
      const issuer = o.issuer ? certificatesIn(await readText(o.issuer), o.issuer)[0] : certs[1];
      if (!issuer) throw new UsageError(`${crt} holds no issuer certificate after the leaf: pass --issuer`);
      const cert = certs[0]!;
      const { der, nonce } = await ocspRequest(cert, issuer);
      const res = await Session.open(cmd).anonymous("pki-ca").raw("POST", "/pki/ocsp", { headers: { "content-type": "application/ocsp-request" }, body: der.slice().buffer as ArrayBuffer });
      if (!res.ok) await expectJson(res);
      const st = await verifyOcspResponse(new Uint8Array(await res.arrayBuffer()), cert, issuer, nonce);
      emit(cmd, st, (x) => (x.status === "revoked" ? `revoked at ${x.revoked_at}${x.reason ? ` (${x.reason})` : ""}` : x.status));
    });
}

function registerRoot(ca: Command): void {
  // The one place the CLI runs code locally instead of over HTTPS: the root ceremony is
  // offline by design (apps/pki-ca/ceremony), so it calls into that code directly.
  const root = sub(ca, "root", "The offline root ceremony (runs on this machine, talks to no service)", [
    "ca root init --dir ROOT --cn 'Example Root CA' --passphrase-file pass.txt",
    "ca root sign --dir ROOT --passphrase-file pass.txt --csr issuing.csr --out issuing.crt",
  ]);
  const hsmOptions = (c: Command) =>
    c.option("--hsm-module <path>", "PKCS#11 module: keep the root key in a token").option("--hsm-token <label>", "the token's label").option("--hsm-pin-file <file>", "file holding the token's PIN");
  const hsmOf = (o: { hsmModule?: string; hsmToken?: string; hsmPinFile?: string; passphraseFile?: string }, tokenRequired: boolean) => {
    if (!o.hsmModule && !o.hsmToken && !o.hsmPinFile) return undefined;
    if (o.passphraseFile) throw new UsageError("--passphrase-file and --hsm-* exclude each other");
    if (!o.hsmModule || !o.hsmPinFile || (tokenRequired && !o.hsmToken)) throw new UsageError(`--hsm-module, --hsm-pin-file${tokenRequired ? " and --hsm-token" : ""} go together`);
    return { modulePath: o.hsmModule, tokenLabel: o.hsmToken, pinFile: o.hsmPinFile };
  };
  const fingerprints = (r: { fingerprints: { sha256: string; sha1: string } }) => `SHA-256 fingerprint: ${r.fingerprints.sha256}\nSHA-1 fingerprint: ${r.fingerprints.sha1}`;

  hsmOptions(
    sub(root, "init", "Make the root key and self-signed certificate in --dir (key: encrypted PKCS#8 file, or in an HSM)", [
      "ca root init --dir ROOT --cn 'Example Root CA' --passphrase-file pass.txt [--key-type P-384] [--days 7300]",
      "ca root init --dir ROOT --cn 'Example Root CA' --hsm-module /usr/lib/softhsm/libsofthsm2.so --hsm-token root --hsm-pin-file pin.txt",
    ]),
  )
    .requiredOption("--dir <dir>", "the ceremony directory")
    .requiredOption("--cn <name>", "the root's common name")
    .option("--key-type <type>", "P-384 (default), P-256 or RSA-4096", "P-384")
    .option("--days <n>", "validity (default 7300)", intOption("--days", 36500))
    .option("--path-len <n>", "path length constraint")
    .option("--passphrase-file <file>", "the key file's passphrase (first line)")
    .option("--hsm-key-label <label>", "the key's label in the token")
    .action(async (o: { dir: string; cn: string; keyType: string; days?: number; pathLen?: string; passphraseFile?: string; hsmModule?: string; hsmToken?: string; hsmPinFile?: string; hsmKeyLabel?: string }, cmd: Command) => {
      const ceremony = await import("../../apps/pki-ca/ceremony/root.ts");
      if (!(ceremony.ROOT_KEY_TYPES as readonly string[]).includes(o.keyType)) throw new UsageError(`--key-type is one of ${ceremony.ROOT_KEY_TYPES.join(", ")}`);
      const pathLen = o.pathLen === undefined ? undefined : intOption("--path-len", 10)(o.pathLen);
      const keyType = o.keyType as (typeof ceremony.ROOT_KEY_TYPES)[number];
      const hsm = hsmOf(o, true);
      privateDir(o.dir);
      if (hsm) {
        const { rootInitHsm } = await import("../../apps/pki-ca/ceremony/hsm-root.ts");
        const r = await rootInitHsm({ dir: o.dir, cn: o.cn, keyType, days: o.days, pathLen, hsm, keyLabel: o.hsmKeyLabel });
        emit(cmd, r, (x) => `${fields({ "root certificate": x.certPath, "root key": `token '${x.token}', key label '${x.keyLabel}' (non-extractable)`, subject: x.subject, serial: x.serial, "not after": x.notAfter.toISOString() })}\n${fingerprints(x)}`);
        return;
      }
      if (!o.passphraseFile) throw new UsageError("--passphrase-file, or --hsm-module, --hsm-token and --hsm-pin-file, is required");
      const passphrase = await ceremony.readPassphrase(o.passphraseFile, { forNewKey: true });
      try {
        const r = await ceremony.rootInit({ dir: o.dir, cn: o.cn, keyType, days: o.days, pathLen, passphrase });
        emit(cmd, r, (x) => `${fields({ "root certificate": x.certPath, "root key": `${x.keyPath} (${ceremony.KEY_FILE_DESCRIPTION})`, subject: x.subject, serial: x.serial, "not after": x.notAfter.toISOString() })}\n${fingerprints(x)}`);
      } finally {
        passphrase.fill(0);
      }
    });

  hsmOptions(sub(root, "sign", "Sign an issuing CA's CSR with the offline root", ["ca root sign --dir ROOT --passphrase-file pass.txt --csr issuing.csr --out issuing.crt [--days 1825]"]))
    .requiredOption("--dir <dir>", "the ceremony directory")
    .requiredOption("--csr <file>", "the issuing CA's CSR (from GET /cas/{type}/csr)")
    .requiredOption("--out <file>", "where the issuing CA certificate goes (never overwritten)")
    .option("--days <n>", "validity (default 1825, capped at the root's)", intOption("--days", 36500))
    .option("--path-len <n>", "path length constraint (default 0)")
    .option("--passphrase-file <file>", "the root key file's passphrase")
    .action(async (o: { dir: string; csr: string; out: string; days?: number; pathLen?: string; passphraseFile?: string; hsmModule?: string; hsmToken?: string; hsmPinFile?: string }, cmd: Command) => {
      const ceremony = await import("../../apps/pki-ca/ceremony/root.ts");
      const pathLen = o.pathLen === undefined ? undefined : Number(o.pathLen);
      const csrPem = await readText(o.csr);
      await ceremony.assertAbsent(o.out);
      const hsm = hsmOf(o, false);
      if (!hsm && !o.passphraseFile) throw new UsageError("--passphrase-file, or --hsm-module and --hsm-pin-file, is required");
      const passphrase = hsm ? new Uint8Array(0) : await ceremony.readPassphrase(o.passphraseFile!);
      try {
        const opts = { dir: o.dir, csrPem, days: o.days, pathLen };
        const r = hsm ? await (await import("../../apps/pki-ca/ceremony/hsm-root.ts")).rootSignHsm({ ...opts, hsm }) : await ceremony.rootSign({ ...opts, passphrase });
        await ceremony.writeNewFile(o.out, r.pem);
        emit(cmd, { ...r, out: o.out }, (x) => `${fields({ "issuing CA certificate": x.out, subject: x.subject, serial: x.serial, "not after": x.notAfter.toISOString() + (x.capped ? " (capped at the root's notAfter)" : "") })}\n${fingerprints(x)}`);
      } finally {
        passphrase.fill(0);
      }
    });
}

export function registerCa(program: Command): void {
  const ca = sub(program, "ca", "pki-ca: certificates, requests, revocation, CRLs, OCSP, profiles, the offline root", [
    "ca certificate svc.example.com svc.crt svc.key",
    "ca ocsp check svc.crt",
    "ca revoke svc.crt --reason superseded",
  ]);
  defineCertificate(ca, "certificate", "ca certificate");
  defineCsrSubmit(sub(ca, "csr", "Certificate signing requests made elsewhere", ["ca csr submit svc.csr --out svc.crt"]), "submit", "ca csr submit");
  defineKeyGenerate(sub(ca, "key", "Local key pairs", ["ca key generate svc.key"]), "generate", "ca key generate");
  defineRevoke(ca, "revoke", "ca revoke");
  registerRequests(ca);
  registerRevocation(ca);
  const profile = sub(ca, "profile", "The CA's certificate profiles", ["ca profile list"]);
  sub(profile, "list", "List the profiles a CSR may name", ["ca profile list", "ca profile list --json"]).action(async (_: unknown, cmd: Command) => {
    type Profile = { name: string; issuing_ca: string; key_types: string[]; max_validity_days: number; default_validity_days: number; extended_key_usage: string[]; approval: string };
    const r = await Session.open(cmd).api("pki-ca").api<{ items: Profile[] }>("GET", "/profiles");
    emit(cmd, r, (x) =>
      table(["NAME", "ISSUING CA", "KEY TYPES", "DEFAULT DAYS", "MAX DAYS", "EKU", "APPROVAL"], x.items.map((p) => [p.name, p.issuing_ca, p.key_types.join(","), p.default_validity_days, p.max_validity_days, p.extended_key_usage.join(","), p.approval])),
    );
  });
  registerRoot(ca);

  // GigVault's names for the same commands.
  const cert = sub(program, "cert", "Aliases: cert create = ca certificate, cert revoke = ca revoke", ["cert create svc.example.com svc.crt svc.key", "cert revoke svc.crt"]);
  defineCertificate(cert, "create", "cert create");
  defineRevoke(cert, "revoke", "cert revoke");
  defineCsrSubmit(sub(program, "csr", "Alias: csr submit = ca csr submit", ["csr submit svc.csr --out svc.crt"]), "submit", "csr submit");
  defineKeyGenerate(sub(program, "key", "Alias: key generate = ca key generate", ["key generate svc.key --pub svc.pub"]), "generate", "key generate");
}
