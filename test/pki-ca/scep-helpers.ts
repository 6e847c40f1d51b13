/** A small SCEP client for the tests, built on pki-ca's own CMS code (apps/pki-ca/scep/cms.ts). */
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import { ContentInfo, IssuerAndSerialNumber, SignedData } from "@peculiar/asn1-cms";
import * as x509 from "../../src/pki/x509.ts";
import { MESSAGE_TYPE, openEnvelope, parsePkiMessage, sealEnvelope, signPkiMessage, type PkiMessage } from "../../apps/pki-ca/scep/cms.ts";
import type { CaFixture } from "./helpers.ts";

/** An RSA-2048 requester: key, self-signed certificate, and a CSR with an optional challenge. */
export class TestScepClient {
  private constructor(
    readonly keys: CryptoKeyPair,
    readonly nodeKey: KeyObject,
    readonly self: x509.X509Certificate,
    readonly transactionId: string,
  ) {}

  static async create(cn: string): Promise<TestScepClient> {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    const priv = await crypto.subtle.importKey("pkcs8", pkcs8, alg, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", priv);
    const pub = await crypto.subtle.importKey("jwk", { kty: jwk.kty, n: jwk.n, e: jwk.e, alg: "RS256" }, alg, true, ["verify"]);
    const keys = { privateKey: priv, publicKey: pub };
    const self = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "01", name: `CN=${cn}`, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000), keys, signingAlgorithm: alg });
    return new TestScepClient(keys, createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }), self, randomBytes(16).toString("hex"));
  }

  /** The same key signing as `cert` (a certificate issued for it), in a new transaction: a RenewalReq sender. */
  withCertificate(cert: x509.X509Certificate): TestScepClient {
    return new TestScepClient(this.keys, this.nodeKey, cert, randomBytes(16).toString("hex"));
  }

  async csr(cn: string, challenge?: string): Promise<Uint8Array> {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=${cn}`,
      keys: this.keys,
      signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: cn }])],
      attributes: challenge ? [new x509.ChallengePasswordAttribute(challenge)] : [],
    });
    return new Uint8Array(csr.rawData);
  }

  /** A signed pkiMessage of `messageType` whose content is `inner` enveloped to `ra`. */
  message(messageType: string, inner: Uint8Array, ra: x509.X509Certificate, transactionId = this.transactionId): Promise<Uint8Array> {
    const signer = { cert: this.self, sign: async (data: ArrayBuffer) => ({ algorithm: new AlgorithmIdentifier({ algorithm: "1.2.840.113549.1.1.11", parameters: null }), signature: await crypto.subtle.sign("RSASSA-PKCS1-v1_5", this.keys.privateKey, data) }) };
    return signPkiMessage(signer, { messageType, transactionId, senderNonce: randomBytes(16) }, sealEnvelope(inner, ra));
  }

  /** A CertPoll (content: IssuerAndSubject, read by nobody but required) for this client's transaction. */
  certPoll(ra: x509.X509Certificate, issuing: x509.X509Certificate): Promise<Uint8Array> {
    const ias = new IssuerAndSerialNumber({ issuer: AsnConvert.parse(issuing.rawData, Certificate).tbsCertificate.subject, serialNumber: new Uint8Array([1]).buffer });
    return this.message(MESSAGE_TYPE.CertPoll, new Uint8Array(AsnConvert.serialize(ias)), ra);
  }

  /** Parses a CertRep; with SUCCESS, also opens its envelope and returns the issued certificate. */
  async reply(der: Uint8Array): Promise<{ msg: PkiMessage; cert?: x509.X509Certificate }> {
    const msg = await parsePkiMessage(der);
    if (msg.pkiStatus !== "0") return { msg };
    const inner = await openEnvelope(msg.content, this.self, this.nodeKey);
    const signed = AsnConvert.parse(AsnConvert.parse(inner.slice().buffer as ArrayBuffer, ContentInfo).content, SignedData);
    const first = signed.certificates![0]!.certificate!;
    return { msg, cert: new x509.X509Certificate(AsnConvert.serialize(first)) };
  }
}

/** The certificates of a degenerate PKCS#7 (GetCACert). */
export function certsOf(der: Uint8Array): x509.X509Certificate[] {
  const signed = AsnConvert.parse(AsnConvert.parse(der.slice().buffer as ArrayBuffer, ContentInfo).content, SignedData);
  return (signed.certificates ?? []).map((c) => new x509.X509Certificate(AsnConvert.serialize(c.certificate!)));
}

/** A one-time SCEP challenge password of `tenant`'s `profile`, from the admin API. */
export async function scepChallenge(f: CaFixture, tenant: string, profile: string): Promise<string> {
  const r = await f.api("/scep/challenges", await f.token(tenant, "pki:admin"), { body: { profile } });
  const body = (await r.json()) as { challenge?: string };
  if (r.status !== 201 || !body.challenge) throw new Error(`SCEP challenge: ${r.status} ${JSON.stringify(body)}`);
  return body.challenge;
}

/** How many certificates `tenant` has (up to 500), from the REST API. */
export async function certificateCount(f: CaFixture, tenant: string): Promise<number> {
  const r = await f.api("/certificates?limit=500", await f.token(tenant, "pki:read"));
  if (r.status !== 200) throw new Error(`certificate search: ${r.status}`);
  return ((await r.json()) as { items: unknown[] }).items.length;
}
