/**
 * pki-ca's EST rules (RFC 7030): which profile a label names, HTTP Basic credentials issued per
 * profile through the admin API, enrollment and re-enrollment, CSR attributes. No HTTP here:
 * routes.ts reads bodies and headers and maps `AppError`s to 4xx text answers.
 *
 * EST is only a front end over the RA: simpleenroll and simplereenroll submit the CSR to
 * `PkiCa.submit` under the credential's profile, so the same policy, lint, storage, webhooks,
 * approval queue and revocation apply as to the REST API and ACME.
 *
 * Guarantees: a credential enrolls only in its own tenant and profile (a label naming another
 * profile is refused); passwords are 256 random bits, stored only as SHA-256 and compared in
 * constant time. simplereenroll issues only when the CSR's subject and SANs are exactly those
 * of a valid, unexpired certificate of the same tenant and profile. On the mTLS listener a TLS
 * client certificate this CA issued authenticates instead (`clientCert` of the request info):
 * it enrolls and re-enrolls for its own subject and SANs, under its own tenant and profile.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { AppError, notFound } from "../../../src/service/errors.ts";
import { parseCsr, type ParsedCsr } from "../../../src/pki/csr.ts";
import { AsnConvert } from "@peculiar/asn1-schema";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { ContentInfo, id_envelopedData } from "@peculiar/asn1-cms";
import { signedContent, type ContentSigner } from "../../../src/pki/cms-signer.ts";
import { sealEnvelope } from "../scep/cms.ts";
import { pemOrBase64Der } from "../../../src/pki/codec.ts";
import { certsOnlyPkcs7 } from "../../../src/pki/pkcs7.ts";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { oidDer } from "../../../src/pki/der.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { sansOf, type PkiCa } from "../domain.ts";
import type { ClientCertificate } from "../../../src/auth/client-cert.ts";
import { equalBytes } from "../../../src/crypto/constant-time.ts";
import type { EstConfig } from "./config.ts";
import type { EstStore } from "./store.ts";

/** An authenticated EST client: its credential's (or certificate's) tenant and profile. */
export interface EstClient {
  username: string;
  tenant: string;
  profile: string;
  /** Set when the client authenticated with a TLS client certificate this CA issued. */
  certificate?: { subject: string; sans: string[]; der?: Uint8Array };
}

export type EnrollOutcome = { status: "issued"; pkcs7: Uint8Array } | { status: "pending"; retryAfter: number };

const sha256Hex = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const randomB64u = (n: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString("base64url");

const ECDSA_SHA256 = "1.2.840.10045.4.3.2";
const ECDSA_SHA384 = "1.2.840.10045.4.3.3";
const RSA_SHA256 = "1.2.840.113549.1.1.11";
const ED25519 = "1.3.101.112";
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
/** RFC 7030 §4.4.1.2 (id-aa-decryptKeyID, id-aa-asymmDecryptKeyID). */
const DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37";
const ASYMMETRIC_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.54";

/** The key types serverkeygen makes, in order of preference, and how. */
const SERVER_KEY_TYPES = ["P-256", "P-384", "Ed25519", "RSA-3072", "RSA-2048"] as const;
const rsa = (bits: number) => ({ generate: { name: "RSASSA-PKCS1-v1_5", modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } });
const SERVER_KEY_ALGORITHMS: Record<string, { generate: AlgorithmIdentifier | EcKeyGenParams | RsaHashedKeyGenParams; sign: Algorithm | EcdsaParams }> = {
  "P-256": { generate: { name: "ECDSA", namedCurve: "P-256" }, sign: { name: "ECDSA", hash: "SHA-256" } },
  "P-384": { generate: { name: "ECDSA", namedCurve: "P-384" }, sign: { name: "ECDSA", hash: "SHA-384" } },
  Ed25519: { generate: { name: "Ed25519" }, sign: { name: "Ed25519" } },
  "RSA-3072": rsa(3072),
  "RSA-2048": rsa(2048),
};

export class EstAuthority {
  constructor(
    readonly config: EstConfig,
    readonly ca: PkiCa,
    readonly store: EstStore,
    /** What signs an encrypted serverkeygen key (RFC 7030 §4.4.2): the profile's issuing CA's RA. */
    private readonly keySigner?: (profile: string) => Promise<ContentSigner>,
  ) {}

  /** The profile a label names (any tenant's), or the default profile without one; 404 otherwise. */
  profileOf(label: string | undefined): string {
    const listed = Object.values(this.config.tenants).flatMap((t) => t.profiles);
    const name = label ?? this.config.default_profile ?? listed[0];
    if (!name || !listed.includes(name)) throw new AppError("not_found", label ? `no EST label ${label.slice(0, 64)}` : "EST is not enabled", { status: 404 });
    return name;
  }

  /**
   * The client of an `Authorization: Basic` header; 401 for a missing, malformed or wrong one.
   * A label, when given, must be the credential's profile.
   */
  async authenticate(header: string | null, label: string | undefined): Promise<EstClient> {
    const m = /^Basic\s+([A-Za-z0-9+/=]{1,512})$/i.exec(header?.trim() ?? "");
    const unauthenticated = () => new AppError("unauthenticated", "HTTP Basic authentication with an EST credential is required", { headers: { "WWW-Authenticate": 'Basic realm="est", charset="UTF-8"' } });
    if (!m) throw unauthenticated();
    const text = Buffer.from(m[1]!, "base64").toString("utf8");
    const colon = text.indexOf(":");
    if (colon <= 0) throw unauthenticated();
    const username = text.slice(0, colon);
    const password = text.slice(colon + 1);
    const row = /^est_[A-Za-z0-9_-]{1,64}$/.test(username) ? await this.store.credential(username) : undefined;
    // The hash is compared even for an unknown user, so timing tells nothing about which part was wrong.
    const expected = Buffer.from(row?.secret_sha256 ?? "0".repeat(64), "hex");
    const ok = timingSafeEqual(expected, Buffer.from(sha256Hex(password), "hex")) && row !== undefined;
    if (!ok || !row) throw unauthenticated();
    const tenant = this.config.tenants[row.tenant];
    if (!tenant?.profiles.includes(row.profile)) throw new AppError("forbidden", "this credential's tenant or profile no longer serves EST", { status: 403 });
    if (label !== undefined && label !== row.profile) throw new AppError("forbidden", `this credential enrolls under label ${row.profile}, not ${label.slice(0, 64)}`, { status: 403 });
    void this.store.touchCredential(username, new Date().toISOString()).catch(() => undefined);
    return { username, tenant: row.tenant, profile: row.profile };
  }

  /**
   * The client of a TLS client certificate (the mTLS port, RFC 7030 §3.3.2): a certificate this
   * CA issued, byte for byte the one stored, unexpired and not revoked. Its tenant and profile
   * are the client's, and it authorizes enrollment for its own subject and SANs only. A label
   * must be its profile, and its tenant must still serve EST with that profile.
   */
  async authenticateCertificate(cert: ClientCertificate, label: string | undefined): Promise<EstClient> {
    const row = await this.ca.store.certificateBySerial(cert.serialNumber.toLowerCase());
    const refused = (why: string) => new AppError("forbidden", `this client certificate does not authorize EST: ${why}`, { status: 403 });
    if (!row || !equalBytes(new Uint8Array(row.cert_der), cert.der)) throw refused("this CA did not issue it");
    if (row.status !== "valid") throw refused("it is revoked");
    if (row.not_after <= new Date().toISOString()) throw refused("it has expired");
    const tenant = Object.hasOwn(this.config.tenants, row.tenant) ? this.config.tenants[row.tenant] : undefined;
    if (!tenant?.profiles.includes(row.profile)) throw refused("its tenant or profile does not serve EST");
    if (label !== undefined && label !== row.profile) throw refused(`it enrolls under label ${row.profile}, not ${label.slice(0, 64)}`);
    return { username: `cert:${row.serial}`, tenant: row.tenant, profile: row.profile, certificate: { subject: row.subject, sans: JSON.parse(row.sans) as string[], der: cert.der } };
  }

  /** The profile's issuing CA and the root, as a certs-only PKCS#7 (RFC 7030 §4.1.3). */
  cacerts(profile: string): Uint8Array {
    const issuing = this.ca.hierarchy.issuing.get(this.ca.profile(profile).issuing_ca);
    if (!issuing) throw new AppError("ca_not_ready", "the profile's issuing CA is not loaded", { status: 503 });
    return certsOnlyPkcs7([issuing.cert, this.ca.hierarchy.root.cert]);
  }

  /**
   * CsrAttrs (RFC 7030 §4.5.2): the signature algorithms the profile's key types sign with and,
   * when the profile requires extensions, an extensionRequest attribute naming them.
   */
  csrattrs(profile: string): Uint8Array {
    const p = this.ca.profile(profile);
    const items: Uint8Array[] = [];
    const algs = new Set<string>();
    for (const k of p.key_types) algs.add(k === "P-256" ? ECDSA_SHA256 : k.startsWith("P-") ? ECDSA_SHA384 : k === "Ed25519" ? ED25519 : RSA_SHA256);
    for (const a of algs) items.push(oidDer(a));
    const required = p.required_extensions.map((r) => this.extensionOid(r)).filter((o): o is string => !!o);
    if (required.length) items.push(derTlv(0x30, oidDer(EXTENSION_REQUEST), derTlv(0x31, ...required.map(oidDer))));
    return derTlv(0x30, ...items);
  }

  private extensionOid(ref: string): string | undefined {
    const known: Record<string, string> = { subjectAltName: "2.5.29.17", keyUsage: "2.5.29.15", extendedKeyUsage: "2.5.29.37", basicConstraints: "2.5.29.19" };
    return /^\d+(\.\d+)+$/.test(ref) ? ref : known[ref];
  }

  /**
   * simpleenroll and simplereenroll: submits the CSR (base64 DER) under the client's profile.
   * The same CSR sent again by the same client after a 202 answers the queued request's state.
   */
  async enroll(client: EstClient, body: string, renew: boolean): Promise<EnrollOutcome> {
    const der = pemOrBase64Der(body, "CERTIFICATE REQUEST", "CSR");
    const csrHash = sha256Hex(der);
    const queued = await this.store.request(client.tenant, client.username, csrHash);
    if (queued) return this.collect(client, queued.request_id, csrHash);
    if (client.certificate) this.checkOwnIdentity(client.certificate, der);
    else if (renew) await this.checkRenewal(client, der);
    const out = await this.ca.submit(client.tenant, { csr: Buffer.from(der).toString("base64"), profile: client.profile }, { origin: "est" });
    if (out.status === "issued") return { status: "issued", pkcs7: this.pkcs7Of(out.certificate.certificate_pem) };
    await this.store.insertRequest({ tenant: client.tenant, username: client.username, csr_sha256: csrHash, request_id: out.request.id, created_at: new Date().toISOString() });
    return { status: "pending", retryAfter: this.config.retry_after_seconds };
  }

  /** The state of a queued request: still pending, issued (the certificate), or rejected (403). */
  private async collect(client: EstClient, requestId: string, csrHash: string): Promise<EnrollOutcome> {
    const r = await this.ca.getRequest(client.tenant, requestId);
    if (r.status === "pending") return { status: "pending", retryAfter: this.config.retry_after_seconds };
    if (r.status === "rejected" || !r.serial) {
      await this.store.deleteRequest(client.tenant, client.username, csrHash);
      throw new AppError("forbidden", `the request was rejected: ${r.reasons.map((x) => x.message).join("; ") || "by an approver"}`, { status: 403 });
    }
    const cert = await this.ca.getCertificate(client.tenant, r.serial);
    return { status: "issued", pkcs7: this.pkcs7Of(cert.certificate_pem) };
  }

  /**
   * RFC 7030 §4.2.2: the subject and SANs must be those of a certificate being renewed: a valid,
   * unexpired certificate of the client's tenant and profile with exactly that subject and SAN set.
   */
  private async checkRenewal(client: EstClient, der: Uint8Array): Promise<void> {
    const p = parseCsr(der);
    const sans = JSON.stringify([...sansOf(p)].sort());
    const now = new Date().toISOString();
    const rows = await this.ca.store.searchCertificates(client.tenant, { subject: p.subject, status: "valid", limit: 1000 });
    const match = rows.find((r) => r.profile === client.profile && r.subject === p.subject && r.not_after > now && JSON.stringify((JSON.parse(r.sans) as string[]).sort()) === sans);
    if (!match) throw new AppError("bad_request", "simplereenroll needs the subject and subjectAltName of a valid certificate of this credential's profile", { status: 400 });
  }

  /**
   * serverkeygen (RFC 7030 §4.4): a key pair made here for the subject and SANs of the client's
   * CSR (whose own key is not certified), certified through the same RA path (policy, lint,
   * storage, webhooks), returned once as PKCS#8 with its certificate and never stored. The
   * key type is the profile's first of P-256, P-384, Ed25519, RSA-3072, RSA-2048. A profile
   * that queues requests for approval is refused: the key would have to wait somewhere.
   */
  async serverKeygen(client: EstClient, body: string): Promise<{ key: Uint8Array; keyType: string; pkcs7: Uint8Array }> {
    const der = pemOrBase64Der(body, "CERTIFICATE REQUEST", "CSR");
    const parsed = parseCsr(der);
    if (client.certificate) this.checkOwnIdentity(client.certificate, der);
    const recipient = this.keyRecipient(client, parsed);
    const profile = this.ca.profile(client.profile);
    if (profile.approval === "manual") throw new AppError("conflict", "serverkeygen needs a profile that issues without approval", { status: 409 });
    const keyType = SERVER_KEY_TYPES.find((k) => profile.key_types.includes(k));
    if (!keyType) throw new AppError("conflict", "this profile allows no key type serverkeygen makes", { status: 409 });
    const alg = SERVER_KEY_ALGORITHMS[keyType]!;
    const keys = (await crypto.subtle.generateKey(alg.generate, true, ["sign", "verify"])) as CryptoKeyPair;
    const request = await x509.Pkcs10CertificateRequestGenerator.create({ name: parsed.subject, keys, signingAlgorithm: alg.sign, extensions: parsed.csr?.extensions ?? [] });
    const out = await this.ca.submit(client.tenant, { csr: Buffer.from(request.rawData).toString("base64"), profile: client.profile }, { origin: "est" });
    if (out.status !== "issued") throw new AppError("conflict", "the request was queued for approval; serverkeygen needs one that issues at once", { status: 409 });
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    const pkcs7 = this.pkcs7Of(out.certificate.certificate_pem);
    if (!recipient || !this.keySigner) return { key: pkcs8, keyType: "application/pkcs8", pkcs7 };
    try {
      // RFC 7030 §4.4.2: the key enveloped to the client's certificate, then signed by the server.
      const enveloped = AsnConvert.parse(sealEnvelope(pkcs8, recipient).slice().buffer as ArrayBuffer, ContentInfo).content;
      const issuing = this.ca.hierarchy.issuing.get(profile.issuing_ca);
      const signed = await signedContent(id_envelopedData, new Uint8Array(enveloped), await this.keySigner(client.profile), [...(issuing ? [issuing.cert] : []), this.ca.hierarchy.root.cert]);
      return { key: signed, keyType: "application/pkcs7-mime; smime-type=server-generated-key", pkcs7 };
    } finally {
      pkcs8.fill(0);
    }
  }

  /**
   * The certificate to encrypt a serverkeygen key to (RFC 7030 §4.4.1.2), when the CSR asks for
   * one: an AsymmetricDecryptKeyIdentifier naming (by subjectKeyIdentifier, or SHA-1 of the key
   * bits) the RSA TLS client certificate this request came with. A DecryptKeyIdentifier (a
   * symmetric key shared beforehand) is refused: no such keys are provisioned here.
   */
  private keyRecipient(client: EstClient, parsed: ParsedCsr): x509.X509Certificate | undefined {
    const attr = (oid: string) => parsed.csr.attributes.find((a) => a.type === oid);
    if (attr(DECRYPT_KEY_ID)) throw new AppError("bad_request", "DecryptKeyIdentifier (a symmetric key) is not supported: use AsymmetricDecryptKeyIdentifier with an RSA client certificate", { status: 400 });
    const asym = attr(ASYMMETRIC_DECRYPT_KEY_ID);
    if (!asym) return undefined;
    const value = asym.values[0] ? new Uint8Array(asym.values[0]) : undefined;
    const id = value && value[0] === 0x04 && value.length >= 2 && value[1]! < 0x80 && value[1]! + 2 === value.length ? value.subarray(2) : undefined;
    if (!id) throw new AppError("malformed_input", "AsymmetricDecryptKeyIdentifier must be an OCTET STRING", { status: 400 });
    if (!client.certificate?.der) throw new AppError("bad_request", "an encrypted serverkeygen key goes to the TLS client certificate: send the request on the mTLS port", { status: 400 });
    const cert = new x509.X509Certificate(client.certificate.der.slice().buffer as ArrayBuffer);
    const ski = cert.getExtension("2.5.29.14") as x509.SubjectKeyIdentifierExtension | null;
    const keyBits = AsnConvert.parse(cert.publicKey.rawData, SubjectPublicKeyInfo).subjectPublicKey;
    const named = Buffer.from(id).toString("hex") === ski?.keyId.toLowerCase() || Buffer.from(id).equals(createHash("sha1").update(new Uint8Array(keyBits)).digest());
    if (!named) throw new AppError("bad_request", "AsymmetricDecryptKeyIdentifier does not name the TLS client certificate's key", { status: 400 });
    if (!(cert.publicKey.algorithm.name ?? "").startsWith("RSA")) throw new AppError("bad_request", "an encrypted serverkeygen key is enveloped by RSA key transport: the client certificate must have an RSA key", { status: 400 });
    return cert;
  }

  /** A certificate-authenticated client asks for its own subject and SANs, nothing else (RFC 7030 §4.2.2). */
  private checkOwnIdentity(own: { subject: string; sans: string[] }, der: Uint8Array): void {
    const p = parseCsr(der);
    const same = p.subject === own.subject && JSON.stringify([...sansOf(p)].sort()) === JSON.stringify([...own.sans].sort());
    if (!same) throw new AppError("forbidden", "a client certificate enrolls only for its own subject and subjectAltName", { status: 403 });
  }

  private pkcs7Of(pem: string): Uint8Array {
    const der = pemOrBase64Der(pem, "CERTIFICATE", "certificate");
    return certsOnlyPkcs7([new x509.X509Certificate(der.slice().buffer as ArrayBuffer)]);
  }

  // --- credentials (admin API) ---

  /** A new credential for one of the tenant's EST profiles: the password is shown only now. */
  async createCredential(tenant: string, profile: string): Promise<{ username: string; password: string; profile: string; created_at: string }> {
    const t = Object.hasOwn(this.config.tenants, tenant) ? this.config.tenants[tenant] : undefined;
    if (!t) throw new AppError("conflict", `tenant ${tenant} does not serve EST (app.est.tenants)`);
    if (!t.profiles.includes(profile)) throw new AppError("conflict", `profile ${profile} is not one of this tenant's EST profiles (${t.profiles.join(", ")})`);
    const username = `est_${randomB64u(12)}`;
    const password = randomB64u(32);
    const created_at = new Date().toISOString();
    await this.store.insertCredential({ username, tenant, profile, secret_sha256: sha256Hex(password), created_at, last_used_at: null });
    return { username, password, profile, created_at };
  }

  async deleteCredential(tenant: string, username: string): Promise<void> {
    if (!(await this.store.deleteCredential(tenant, username))) throw notFound("EST credential");
  }
}
