/**
 * The pki-ca hierarchy under an offline root (`app.root: external`): each configured
 * issuing CA's key is made here and stored barrier-encrypted, as with an instance root,
 * but its certificate comes from the root ceremony: an admin fetches the CSR, signs it
 * offline with `cli.ts root sign`, and uploads the certificate with the root certificate.
 * Until then that issuing CA is not ready: issuance under it answers 503 `ca_not_ready`.
 *
 * Guarantees: an uploaded certificate is stored only when its SubjectPublicKeyInfo is
 * byte-for-byte the stored key's, it is a CA certificate (CA:true, keyCertSign) within its
 * validity, its issuer is the uploaded root's subject and its signature verifies under the
 * root's key, and the root is a self-signed CA certificate identical to any root already
 * imported for this instance. Imports are serialized and happen once per issuing CA (a
 * conditional update). The OCSP responder and TSA certificates are then made by the same
 * code as with an instance root.
 */
import { sql } from "kysely";
import type { DataProtector } from "../../../src/service/context.ts";
import { AppError } from "../../../src/service/errors.ts";
import { decodePemBlocks } from "../../../src/pki/codec.ts";
import { toPem } from "../../../src/pki/keys.ts";
import { issuerHashes } from "../../../src/pki/ocsp.ts";
import { CA_KEY_TYPES, generateCaKey, importCaKey, keyGenParams, signingAlgorithm, type CaKeyType } from "../../../src/pki/signing.ts";
import { randomSerialHex } from "../../../src/pki/serial.ts";
import * as x509 from "../../../src/pki/x509.ts";
import {
  crlShardsOf,
  DEFAULT_HIERARCHY_OPTIONS,
  issuingId,
  loadOrCreateResponder,
  loadOrCreateTsa,
  sealContext,
  type CaUrls,
  type ExternalRootAdmin,
  type Hierarchy,
  type HierarchyOptions,
  type IssuingCa,
  type Signer,
} from "../hierarchy.ts";
import type { CaRow, PkiStore } from "../store.ts";

const MAX_CHAIN_BYTES = 64 * 1024;

const notReady = (what: string) =>
  new AppError("ca_not_ready", `${what} awaits its certificate from the offline root (GET /cas/{type}/csr, then PUT /cas/{type}/certificate)`, { status: 503 });
const rejected = (message: string) => new AppError("certificate_rejected", message, { status: 422 });

interface Pending {
  id: string;
  keyType: CaKeyType;
  key: CryptoKey;
  spki: Uint8Array;
  csrPem: string;
}

/**
 * The issuing CAs by key type. `get` of a configured CA that awaits its certificate throws
 * `ca_not_ready` (503), so issuance under it is refused with that status; iteration sees
 * only ready CAs, so OCSP, CRLs and listings ignore the pending ones.
 */
class IssuingMap extends Map<CaKeyType, IssuingCa> {
  readonly pending = new Map<CaKeyType, Pending>();
  override get(t: CaKeyType): IssuingCa | undefined {
    if (this.pending.has(t)) throw notReady(`issuing CA ${t}`);
    return super.get(t);
  }
}

/** The public half of a stored private key, as SPKI DER (for the CSR and the upload check). */
async function publicOf(t: CaKeyType, pkcs8: Uint8Array): Promise<{ publicKey: CryptoKey; spki: Uint8Array }> {
  const params = keyGenParams(t) as EcKeyImportParams;
  const priv = await crypto.subtle.importKey("pkcs8", pkcs8.slice().buffer as ArrayBuffer, params, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", priv);
  for (const f of ["d", "p", "q", "dp", "dq", "qi"] as const) delete jwk[f];
  jwk.key_ops = ["verify"];
  const publicKey = await crypto.subtle.importKey("jwk", jwk, params, true, ["verify"]);
  return { publicKey, spki: new Uint8Array(await crypto.subtle.exportKey("spki", publicKey)) };
}

function parseChain(pem: string): x509.X509Certificate[] {
  if (pem.length > MAX_CHAIN_BYTES) throw new AppError("payload_too_large", `the PEM chain is at most ${MAX_CHAIN_BYTES} bytes`);
  const blocks = decodePemBlocks(pem).filter((b) => b.label === "CERTIFICATE");
  if (blocks.length !== 2) throw new AppError("malformed_input", "send exactly two PEM certificates: the issuing CA's, then the root's");
  return blocks.map((b, i) => {
    try {
      return new x509.X509Certificate(b.der.slice().buffer as ArrayBuffer);
    } catch (cause) {
      throw new AppError("malformed_input", `PEM certificate ${i + 1} is not a valid X.509 certificate`, { cause });
    }
  });
}

function isCaCert(c: x509.X509Certificate): boolean {
  const bc = c.getExtension(x509.BasicConstraintsExtension);
  const ku = c.getExtension(x509.KeyUsagesExtension);
  return !!bc?.ca && !!ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) !== 0;
}

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

async function sha256Hex(der: ArrayBuffer): Promise<string> {
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", der)), (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Loads the hierarchy of an instance whose root is offline, creating pending issuing-CA keys. */
export async function loadExternalHierarchy(store: PkiStore, protector: DataProtector, keyTypes: CaKeyType[], urls: CaUrls, opts: HierarchyOptions = DEFAULT_HIERARCHY_OPTIONS): Promise<Hierarchy> {
  const tag = randomSerialHex().slice(0, 8);
  const rootRow = await store.getCa("root");
  if (rootRow && rootRow.key_sealed.length > 0) throw new AppError("config_invalid", "app.root: this instance already has an online instance root; external cannot be switched on");
  let root: Hierarchy["root"] | undefined = rootRow ? { id: "root", keyType: rootRow.key_type, cert: new x509.X509Certificate(rootRow.cert_der.slice().buffer as ArrayBuffer) } : undefined;
  let tsa: Hierarchy["tsa"] | undefined;
  const issuing = new IssuingMap();

  const attach = async (t: CaKeyType, ca: Signer, rootCert: x509.X509Certificate) => {
    const responder = await loadOrCreateResponder(store, protector, t, ca, tag, opts);
    issuing.pending.delete(t);
    issuing.set(t, { ...ca, responder, crlShards: await crlShardsOf(store, ca.id), hashes: await issuerHashes(ca.cert), chainPem: toPem("CERTIFICATE", ca.cert.rawData) + toPem("CERTIFICATE", rootCert.rawData) });
    if (t === keyTypes[0] && !tsa) {
      const s = await loadOrCreateTsa(store, protector, ca, urls, tag, opts);
      tsa = { ...s, chainPem: toPem("CERTIFICATE", s.cert.rawData) + issuing.get(t)!.chainPem };
    }
  };

  for (const t of keyTypes) {
    const id = issuingId(t);
    let row = await store.getCa(id);
    if (!row) {
      const keys = await generateCaKey(t);
      const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
      const fresh: CaRow = { id, kind: "issuing", key_type: t, parent_id: "root", cert_der: new Uint8Array(0), key_sealed: await protector.encrypt(pkcs8, sealContext(id)), created_at: new Date().toISOString(), crl_shards: opts.crlShards };
      pkcs8.fill(0);
      row = await store.putCaOnce(fresh);
    }
    const pkcs8 = await protector.decrypt(row.key_sealed, sealContext(id));
    try {
      const key = await importCaKey(t, pkcs8);
      if (row.cert_der.length > 0) {
        if (!root) throw new AppError("config_invalid", `issuing CA ${t} has a certificate but no root is stored`);
        await attach(t, { id, keyType: t, key, cert: new x509.X509Certificate(row.cert_der.slice().buffer as ArrayBuffer) }, root.cert);
        continue;
      }
      const { publicKey, spki } = await publicOf(t, pkcs8);
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=cryptoutil pki-ca Issuing CA ${t} ${tag}, O=cryptoutil`,
        keys: { privateKey: key, publicKey },
        signingAlgorithm: signingAlgorithm(t),
        extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
      });
      issuing.pending.set(t, { id, keyType: t, key, spki, csrPem: toPem("CERTIFICATE REQUEST", csr.rawData) });
    } finally {
      pkcs8.fill(0);
    }
  }

  const typeOf = (type: string): CaKeyType => {
    const t = CA_KEY_TYPES.find((k) => k.toLowerCase() === type.toLowerCase());
    if (!t || !keyTypes.includes(t)) throw new AppError("not_found", `no issuing CA of type ${type} is configured`);
    return t;
  };
  let lock: Promise<unknown> = Promise.resolve();

  const admin: ExternalRootAdmin = {
    async csr(type) {
      const t = typeOf(type);
      const p = issuing.pending.get(t);
      if (!p) throw new AppError("conflict", `issuing CA ${t} already has its certificate`);
      return p.csrPem;
    },
    importCertificate(type, chainPem) {
      const run = lock.catch(() => undefined).then(async () => {
        const t = typeOf(type);
        const p = issuing.pending.get(t);
        if (!p) throw new AppError("conflict", `issuing CA ${t} already has its certificate`);
        const [cert, rootCert] = parseChain(chainPem) as [x509.X509Certificate, x509.X509Certificate];
        if (!equalBytes(new Uint8Array(cert.publicKey.rawData), p.spki)) throw rejected(`the certificate is for another key than issuing CA ${t}'s`);
        if (!isCaCert(cert)) throw rejected("the certificate is not a CA certificate (CA:true with keyCertSign)");
        if (!isCaCert(rootCert) || rootCert.subject !== rootCert.issuer || !(await rootCert.verify({ signatureOnly: true }))) throw rejected("the second certificate is not a self-signed root CA certificate");
        if (cert.issuer !== rootCert.subject || !(await cert.verify({ publicKey: rootCert.publicKey, signatureOnly: true }))) throw rejected("the certificate is not signed by the given root");
        const now = Date.now();
        if (cert.notBefore.getTime() > now + 300_000 || cert.notAfter.getTime() <= now) throw rejected("the certificate is not within its validity period");
        if (root && !equalBytes(new Uint8Array(root.cert.rawData), new Uint8Array(rootCert.rawData))) throw rejected("this instance already trusts a different root");
        if (!root) {
          const stored = await store.putCaOnce({ id: "root", kind: "root", key_type: "external", parent_id: null, cert_der: new Uint8Array(rootCert.rawData), key_sealed: new Uint8Array(0), created_at: new Date().toISOString() });
          if (!equalBytes(stored.cert_der, new Uint8Array(rootCert.rawData))) throw rejected("this instance already trusts a different root");
          root = { id: "root", keyType: "external", cert: rootCert };
        }
        const r = await store.db
          .updateTable("pki_cas")
          .set({ cert_der: new Uint8Array(cert.rawData) })
          .where("id", "=", p.id)
          .where(sql<boolean>`length(cert_der) = 0`)
          .executeTakeFirst();
        if (Number(r.numUpdatedRows) !== 1) throw new AppError("conflict", `issuing CA ${t} already has its certificate`);
        await attach(t, { id: p.id, keyType: t, key: p.key, cert }, rootCert);
        return { id: p.id, subject: cert.subject, not_after: cert.notAfter.toISOString(), root_sha256: await sha256Hex(rootCert.rawData) };
      });
      lock = run;
      return run;
    },
  };

  const h = { issuing, external: admin } as unknown as Hierarchy;
  // Root and TSA exist only once imported: until then reading them answers ca_not_ready (503).
  Object.defineProperty(h, "root", {
    enumerable: true,
    get: () => {
      if (!root) throw notReady("the root certificate");
      return root;
    },
  });
  Object.defineProperty(h, "tsa", {
    enumerable: true,
    get: () => {
      if (!tsa) throw notReady(`the time-stamping authority (under issuing CA ${keyTypes[0]})`);
      return tsa;
    },
  });
  return h;
}
