/**
 * PKCS#10 certificate signing requests (RFC 2986): decoding and proof of possession.
 *
 * Guarantees: input is size-capped, accepted as one PEM block or base64 DER only, and
 * parsed either by a strict DER walk (common shapes; every tag and length checked against
 * the buffer, the whole input consumed) or, for anything the walk does not fully accept, by
 * `@peculiar/x509`; both give the same result (checked by differential tests over mutated
 * CSRs). Any parse failure is `malformed_input` (400), never an unhandled error; a requested
 * extension appearing twice is refused. `verifyPossession` checks the CSR's self-signature,
 * which proves the requester holds the private key of the public key it asks for; on
 * its WebCrypto path it also requires strict DER lengths and a signature BIT STRING
 * with no unused bits, so it never accepts a CSR the library's verifier refuses.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { GeneralNames } from "@peculiar/asn1-x509";
import { AppError } from "../service/errors.ts";
import { pemOrBase64Der } from "./codec.ts";
import { subjectKeyType, type SubjectKeyType } from "./signing.ts";
import * as x509 from "./x509.ts";
import { derToRaw, EC_SIZES } from "./ecdsa-signature.ts";
import { Buffer } from "node:buffer";
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { LoopContention } from "../service/cpu-contention.ts";

const NODE_CURVE: Record<string, string> = { "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1" };
const NODE_HASH: Record<string, string> = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };

/** Larger than any real CSR (an RSA-4096 request with many SANs is under 8 KiB). */
export const MAX_CSR_BYTES = 64 * 1024;

/** What a CA needs to know about a request, read once from the CSR. */
export interface ParsedCsr {
  csr: x509.Pkcs10CertificateRequest;
  der: Uint8Array;
  subject: string;
  commonName?: string;
  keyType: SubjectKeyType | string;
  dns: string[];
  ips: string[];
  emails: string[];
  uris: string[];
  /** Microsoft User Principal Names (SAN otherName 1.3.6.1.4.1.311.20.2.3), as written. */
  upns: string[];
  /** The extensions the CSR requests (PKCS#9 extensionRequest), in order; each OID at most once. */
  extensions: RequestedExtension[];
}

/** One requested extension: its OID, criticality and full Extension DER. */
export interface RequestedExtension {
  oid: string;
  critical: boolean;
  der: Uint8Array;
}

/**
 * Decodes a CSR given as PEM (`CERTIFICATE REQUEST`, or the legacy `NEW CERTIFICATE REQUEST`;
 * text around the block ignored, RFC 7468 §2) or base64 DER.
 */
export function decodeCsr(text: string): Uint8Array {
  if (text.length > MAX_CSR_BYTES * 4) throw new AppError("payload_too_large", "the CSR is too large");
  const der = pemOrBase64Der(text, "CERTIFICATE REQUEST", "CSR");
  if (der.length > MAX_CSR_BYTES) throw new AppError("payload_too_large", "the CSR is too large");
  return der;
}

/**
 * Parses DER CSR bytes; throws `malformed_input` on anything that is not a PKCS#10 request.
 * The common shapes (EC P-256/384/521, rsaEncryption or Ed25519 keys; no attribute but one
 * extensionRequest; SANs of DNS, email, URI and IP names in printable ASCII, and UPN otherNames
 * in UTF8String) are read by a
 * strict DER walk, about 20 times faster than the library; anything else, or anything the
 * walk does not fully understand, is parsed by `@peculiar/x509` (`parseCsrGeneric`), so both
 * paths give the same answer (test/pki-ca/csr.test.ts compares them on mutated inputs).
 */
export function parseCsr(der: Uint8Array): ParsedCsr {
  return parseCsrFast(der) ?? parseCsrGeneric(der);
}

/** Parses a CSR with `@peculiar/x509` only. */
export function parseCsrGeneric(der: Uint8Array): ParsedCsr {
  let csr: x509.Pkcs10CertificateRequest;
  let keyAlg: Algorithm;
  try {
    csr = new x509.Pkcs10CertificateRequest(der.slice().buffer as ArrayBuffer);
    keyAlg = csr.publicKey.algorithm;
    void csr.subject;
  } catch (cause) {
    throw new AppError("malformed_input", "the CSR is not a valid PKCS#10 request", { cause });
  }
  const out: ParsedCsr = { csr, der, subject: csr.subject, keyType: subjectKeyType(keyAlg as never), dns: [], ips: [], emails: [], uris: [], upns: [], extensions: [] };
  try {
    const cn = csr.subjectName.getField("CN");
    if (cn.length > 1) throw new AppError("malformed_input", "the CSR subject has more than one common name");
    out.commonName = cn[0];
    for (const e of csr.extensions) {
      // RFC 5280 §4.2: an extension appears at most once; a request asking twice is ambiguous.
      if (out.extensions.some((x) => x.oid === e.type)) throw new AppError("malformed_input", `the CSR requests extension ${e.type} twice`);
      out.extensions.push({ oid: e.type, critical: e.critical, der: new Uint8Array(e.rawData) });
    }
    const ext = csr.getExtension("2.5.29.17");
    const san = ext ? new x509.SubjectAlternativeNameExtension(ext.rawData) : undefined;
    // The library skips names it cannot read (an otherName of a type it does not know): a
    // request for a name the CA would leave out is refused, not issued without it.
    if (san && AsnConvert.parse(san.value, GeneralNames).length !== san.names.items.length) {
      throw new AppError("malformed_input", "the CSR asks for a SAN of a type this CA does not issue");
    }
    for (const n of san?.names.items ?? []) {
      if (n.type === "dns") out.dns.push(n.value.toLowerCase());
      else if (n.type === "ip") out.ips.push(n.value);
      else if (n.type === "email") out.emails.push(n.value);
      else if (n.type === "url") out.uris.push(n.value);
      else if (n.type === "upn") out.upns.push(n.value);
      // Any other otherName (GUID, or a type the library does not know) stays refused.
      else throw new AppError("malformed_input", `the CSR asks for an unsupported SAN type ${n.type}`);
    }
  } catch (cause) {
    if (cause instanceof AppError) throw cause;
    throw new AppError("malformed_input", "the CSR's subject or extensions cannot be read", { cause });
  }
  return out;
}

const OID_EXTENSION_REQUEST = "2a864886f70d01090e"; // 1.2.840.113549.1.9.14
const OID_SAN = "551d11"; // 2.5.29.17
const OID_CHALLENGE_PASSWORD = "2a864886f70d010907"; // 1.2.840.113549.1.9.7
const KEY_OIDS: Record<string, "ec" | "rsa" | "ed25519"> = { "2a8648ce3d0201": "ec", "2a864886f70d010101": "rsa", "2b6570": "ed25519" };
const CURVES: Record<string, SubjectKeyType> = { "2a8648ce3d030107": "P-256", "2b81040022": "P-384", "2b81040023": "P-521" };

/**
 * The WebCrypto algorithm of a SubjectPublicKeyInfo's key, read from its DER (what
 * `verifyBySpki` needs: the name, and the curve of an EC key); undefined for other key types.
 */
export function spkiKeyAlgorithm(spki: Uint8Array): (Algorithm & { namedCurve?: string }) | undefined {
  try {
    const outer = tlv(spki, 0, spki.length, 0x30);
    const alg = tlv(spki, outer.contentStart, outer.end, 0x30);
    const oid = tlv(spki, alg.contentStart, alg.end, 0x06);
    const kind = KEY_OIDS[hexOf(spki.subarray(oid.contentStart, oid.end))];
    if (kind === "rsa") return { name: "RSASSA-PKCS1-v1_5" };
    if (kind === "ed25519") return { name: "Ed25519" };
    if (kind !== "ec") return undefined;
    const curve = tlv(spki, oid.end, alg.end, 0x06);
    const namedCurve = CURVES[hexOf(spki.subarray(curve.contentStart, curve.end))];
    return namedCurve ? { name: "ECDSA", namedCurve } : undefined;
  } catch {
    return undefined;
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
function hexOf(b: Uint8Array): string {
  let out = "";
  for (let i = 0; i < b.length; i++) out += HEX[b[i]!];
  return out;
}

/** OID content the library also decodes: non-empty, ending on a complete subidentifier. */
const wellFormedOid = (b: Uint8Array) => b.length > 0 && b[b.length - 1]! < 0x80;

/** Dotted form of DER OID content bytes. */
function oidText(b: Uint8Array): string {
  const parts: number[] = [];
  let v = 0;
  for (const x of b) {
    v = v * 128 + (x & 0x7f);
    if (!(x & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** The text of an IA5String-like value when it is printable ASCII, else undefined. */
function printable(b: Uint8Array): string | undefined {
  for (const x of b) if (x < 0x20 || x > 0x7e) return undefined;
  return String.fromCharCode(...b);
}

/** An IP address as `@peculiar/x509` writes it: dotted IPv4, or IPv6 with the first longest zero run (of 2+) compressed. */
function ipText(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (bestLen < 2) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/** Short names `@peculiar/x509` gives attribute types in a Name's text, by OID content hex. */
const NAME_TYPES: Record<string, string> = {
  "550403": "CN",
  "550407": "L",
  "550408": "ST",
  "55040a": "O",
  "55040b": "OU",
  "550406": "C",
  "0992268993f22c640119": "DC",
  "2a864886f70d010901": "E",
  "55042a": "G",
  "55042b": "I",
  "550404": "SN",
  "55040c": "T",
};
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The library's escaping of a Name attribute value (RFC 4514 specials; the first CR/LF/TAB as hex). */
function escapeValue(v: string): string {
  return v
    .replace(/([,+"\\<>;])/g, "\\$1")
    .replace(/^([ #])/, "\\$1")
    .replace(/([ ]$)/, "\\$1")
    .replace(/([\r\n\t])/, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`);
}

function libraryName(der: Uint8Array): { text: string; cn: string[] } {
  const name = new x509.Name(der.slice().buffer as ArrayBuffer);
  return { text: name.toString(), cn: name.getField("CN") };
}

/**
 * The subject's text as `@peculiar/x509` writes it (`CN=a, O=b`, multi-valued RDNs with `+`)
 * and its common names, for values in UTF8String, PrintableString or IA5String; undefined for
 * anything else (the library then reads it).
 */
function subjectText(der: Uint8Array, subject: { contentStart: number; end: number }): { text: string; cn: string[] } | undefined {
  const rdns: string[] = [];
  const cn: string[] = [];
  for (let at = subject.contentStart; at < subject.end; ) {
    const set = tlv(der, at, subject.end, 0x31);
    if (set.contentStart === set.end) return undefined;
    const parts: string[] = [];
    for (let p = set.contentStart; p < set.end; ) {
      const atv = tlv(der, p, set.end, 0x30);
      const type = tlv(der, atv.contentStart, atv.end, 0x06);
      const typeBytes = der.subarray(type.contentStart, type.end);
      if (!wellFormedOid(typeBytes)) return undefined;
      const tag = der[type.end];
      if (tag !== 0x0c && tag !== 0x13 && tag !== 0x16) return undefined;
      const value = tlv(der, type.end, atv.end, tag);
      if (value.end !== atv.end) return undefined;
      const bytes = der.subarray(value.contentStart, value.end);
      let text: string;
      if (tag === 0x0c) {
        try {
          text = strictUtf8.decode(bytes);
        } catch {
          return undefined;
        }
      } else {
        const ascii = printable(bytes);
        if (ascii === undefined) return undefined;
        text = ascii;
      }
      // The library reads an empty value as absent and writes "#"; leave that to it.
      if (text === "") return undefined;
      const hex = hexOf(typeBytes);
      const short = NAME_TYPES[hex];
      if (short === "CN") cn.push(text);
      parts.push(`${short ?? oidText(typeBytes)}=${escapeValue(text)}`);
      p = atv.end;
    }
    rdns.push(parts.join("+"));
    at = set.end;
  }
  return { text: rdns.join(", "), cn };
}

const OID_UPN = "2b060104018237140203"; // 1.3.6.1.4.1.311.20.2.3

/**
 * The text of an otherName's content (`type-id OID, [0] EXPLICIT value`) when it is a UPN
 * held in a UTF8String of valid UTF-8; undefined for anything else (the library then decides).
 */
function upnOf(b: Uint8Array): string | undefined {
  const oid = tlv(b, 0, b.length, 0x06);
  if (hexOf(b.subarray(oid.contentStart, oid.end)) !== OID_UPN) return undefined;
  const wrap = tlv(b, oid.end, b.length, 0xa0);
  if (wrap.end !== b.length) return undefined;
  const str = tlv(b, wrap.contentStart, wrap.end, 0x0c);
  // A leading byte order mark is left to the library, which keeps it in the text.
  if (str.end !== wrap.end || (b[str.contentStart] === 0xef && b[str.contentStart + 1] === 0xbb)) return undefined;
  try {
    return strictUtf8.decode(b.subarray(str.contentStart, str.end));
  } catch {
    return undefined;
  }
}

/** The strict DER walk of `parseCsr`; undefined when the request is outside its shapes. */
function parseCsrFast(der: Uint8Array): ParsedCsr | undefined {
  try {
    const outer = tlv(der, 0, der.length, 0x30);
    if (outer.end !== der.length) return undefined;
    const info = tlv(der, outer.contentStart, outer.end, 0x30);
    const version = tlv(der, info.contentStart, info.end, 0x02);
    if (version.end - version.contentStart !== 1 || der[version.contentStart] !== 0) return undefined;
    const subject = tlv(der, version.end, info.end, 0x30);
    const spki = tlv(der, subject.end, info.end, 0x30);
    const attrs = tlv(der, spki.end, info.end, 0xa0);
    if (attrs.end !== info.end) return undefined;
    const sigAlg = tlv(der, info.end, outer.end, 0x30);
    const sigOid = tlv(der, sigAlg.contentStart, sigAlg.end, 0x06);
    // No parameters, or NULL; anything else (RSA-PSS parameters) is left to the library.
    if (!wellFormedOid(der.subarray(sigOid.contentStart, sigOid.end))) return undefined;
    if (sigOid.end !== sigAlg.end && tlv(der, sigOid.end, sigAlg.end, 0x05).end !== sigAlg.end) return undefined;
    if (sigOid.end !== sigAlg.end && der[sigOid.end + 1] !== 0) return undefined;
    const sig = tlv(der, sigAlg.end, outer.end, 0x03);
    if (sig.end !== outer.end || sig.end === sig.contentStart || der[sig.contentStart] !== 0) return undefined;

    // Key type from the SubjectPublicKeyInfo.
    const alg = tlv(der, spki.contentStart, spki.end, 0x30);
    const keyOid = tlv(der, alg.contentStart, alg.end, 0x06);
    const bits = tlv(der, alg.end, spki.end, 0x03);
    if (bits.end !== spki.end || der[bits.contentStart] !== 0) return undefined;
    const kind = KEY_OIDS[hexOf(der.subarray(keyOid.contentStart, keyOid.end))];
    let keyType: SubjectKeyType | undefined;
    if (kind === "ec") {
      const curve = tlv(der, keyOid.end, alg.end, 0x06);
      if (curve.end !== alg.end) return undefined;
      keyType = CURVES[hexOf(der.subarray(curve.contentStart, curve.end))];
    } else if (kind === "rsa") {
      // NULL parameters, then RSAPublicKey { modulus, exponent } in the bit string.
      const nul = tlv(der, keyOid.end, alg.end, 0x05);
      if (nul.end !== alg.end || nul.contentStart !== nul.end) return undefined;
      const rsa = tlv(der, bits.contentStart + 1, bits.end, 0x30);
      const n = tlv(der, rsa.contentStart, rsa.end, 0x02);
      const e = tlv(der, n.end, rsa.end, 0x02);
      if (e.end !== rsa.end || rsa.end !== bits.end || n.end === n.contentStart || e.end === e.contentStart) return undefined;
      // As the library counts it: the modulus bytes without one leading zero, times 8.
      keyType = `RSA-${(der[n.contentStart] === 0 ? n.end - n.contentStart - 1 : n.end - n.contentStart) * 8}` as SubjectKeyType;
    } else if (kind === "ed25519") {
      if (keyOid.end !== alg.end) return undefined;
      keyType = "Ed25519";
    }
    if (!keyType) return undefined;

    // Attributes: at most one extensionRequest with one Extensions value, and at most one
    // challengePassword (SCEP's; read by the front end that needs it, as the library leaves it).
    const extensions: RequestedExtension[] = [];
    let sanDer: Uint8Array | undefined;
    let exts: ReturnType<typeof tlv> | undefined;
    let challenges = 0;
    for (let at = attrs.contentStart; at < attrs.end; ) {
      const attr = tlv(der, at, attrs.end, 0x30);
      const type = tlv(der, attr.contentStart, attr.end, 0x06);
      const values = tlv(der, type.end, attr.end, 0x31);
      if (values.end !== attr.end) return undefined;
      const oid = hexOf(der.subarray(type.contentStart, type.end));
      if (oid === OID_CHALLENGE_PASSWORD && challenges++ === 0) {
        const tag = der[values.contentStart];
        if (tag !== 0x13 && tag !== 0x0c && tag !== 0x16 && tag !== 0x14) return undefined;
        if (tlv(der, values.contentStart, values.end, tag).end !== values.end) return undefined;
      } else if (oid === OID_EXTENSION_REQUEST && !exts) {
        exts = tlv(der, values.contentStart, values.end, 0x30);
        if (exts.end !== values.end) return undefined;
      } else return undefined;
      at = attr.end;
    }
    if (exts) {
      for (let at = exts.contentStart; at < exts.end; ) {
        const ext = tlv(der, at, exts.end, 0x30);
        const oid = tlv(der, ext.contentStart, ext.end, 0x06);
        let next = oid.end;
        let critical = false;
        if (der[next] === 0x01) {
          const b = tlv(der, next, ext.end, 0x01);
          if (b.end - b.contentStart !== 1 || (der[b.contentStart] !== 0 && der[b.contentStart] !== 0xff)) return undefined;
          critical = der[b.contentStart] === 0xff;
          next = b.end;
        }
        const value = tlv(der, next, ext.end, 0x04);
        const oidBytes = der.subarray(oid.contentStart, oid.end);
        if (value.end !== ext.end || !wellFormedOid(oidBytes)) return undefined;
        const dotted = oidText(oidBytes);
        if (extensions.some((x) => x.oid === dotted)) throw new AppError("malformed_input", `the CSR requests extension ${dotted} twice`);
        extensions.push({ oid: dotted, critical, der: der.slice(ext.start, ext.end) });
        if (hexOf(oidBytes) === OID_SAN) sanDer = der.subarray(value.contentStart, value.end);
        // Other extensions are read as the library reads them, so the same requests fail.
        else x509.ExtensionFactory.create(der.slice(ext.start, ext.end).buffer as ArrayBuffer);
        at = ext.end;
      }
    }

    const out: ParsedCsr = { der, subject: "", keyType, dns: [], ips: [], emails: [], uris: [], upns: [], extensions } as unknown as ParsedCsr;
    if (sanDer) {
      const names = tlv(sanDer, 0, sanDer.length, 0x30);
      if (names.end !== sanDer.length) return undefined;
      for (let at = names.contentStart; at < names.end; ) {
        const tag = sanDer[at]!;
        if (tag !== 0xa0 && tag !== 0x81 && tag !== 0x82 && tag !== 0x86 && tag !== 0x87) return undefined;
        const n = tlv(sanDer, at, names.end, tag);
        const value = sanDer.subarray(n.contentStart, n.end);
        if (tag === 0xa0) {
          const upn = upnOf(value);
          if (upn === undefined) return undefined;
          out.upns.push(upn);
        } else if (tag === 0x87) {
          if (value.length !== 4 && value.length !== 16) return undefined;
          out.ips.push(ipText(value));
        } else {
          const text = printable(value);
          if (text === undefined) return undefined;
          (tag === 0x81 ? out.emails : tag === 0x82 ? out.dns : out.uris).push(tag === 0x82 ? text.toLowerCase() : text);
        }
        at = n.end;
      }
    }

    const name = subjectText(der, subject) ?? libraryName(der.slice(subject.start, subject.end));
    if (name.cn.length > 1) throw new AppError("malformed_input", "the CSR subject has more than one common name");
    out.commonName = name.cn[0];
    out.subject = name.text;
    // The library's view is built only when someone asks for it (the CA ceremony, exotic signatures).
    let lib: x509.Pkcs10CertificateRequest | undefined;
    Object.defineProperty(out, "csr", {
      enumerable: true,
      get: () => {
        try {
          return (lib ??= new x509.Pkcs10CertificateRequest(der.slice().buffer as ArrayBuffer));
        } catch (cause) {
          throw new AppError("malformed_input", "the CSR is not a valid PKCS#10 request", { cause });
        }
      },
    });
    return out;
  } catch (e) {
    if (e instanceof AppError) throw e;
    return undefined;
  }
}

/**
 * Signature algorithms verified directly with WebCrypto, keyed by the hex of the OID's DER
 * content; anything else (RSA-PSS, SHA-1) goes through `@peculiar/x509`.
 */
const DIRECT: Record<string, { hash?: string; kind: "ecdsa" | "rsa" | "ed25519" }> = {
  "2a8648ce3d040302": { kind: "ecdsa", hash: "SHA-256" }, // 1.2.840.10045.4.3.2
  "2a8648ce3d040303": { kind: "ecdsa", hash: "SHA-384" }, // 1.2.840.10045.4.3.3
  "2a8648ce3d040304": { kind: "ecdsa", hash: "SHA-512" }, // 1.2.840.10045.4.3.4
  "2a864886f70d01010b": { kind: "rsa", hash: "SHA-256" }, // 1.2.840.113549.1.1.11
  "2a864886f70d01010c": { kind: "rsa", hash: "SHA-384" }, // 1.2.840.113549.1.1.12
  "2a864886f70d01010d": { kind: "rsa", hash: "SHA-512" }, // 1.2.840.113549.1.1.13
  "2b6570": { kind: "ed25519" }, // 1.3.101.112
};

/**
 * True when the CSR's signature verifies under its own public key (proof of possession).
 * The common algorithms are checked with WebCrypto over the exact CertificationRequestInfo
 * bytes; others (RSA-PSS, SHA-1) through the library's own verifier.
 */
export async function verifyPossession(p: ParsedCsr): Promise<boolean> {
  try {
    const { info, spki, signature, oidHex } = csrSignedParts(p.der);
    const alg = DIRECT[oidHex];
    if (!alg) return await p.csr.verify();
    return await verifyBySpki(spki, keyAlgorithmOf(p), alg, info, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies `signature` over `data` with a SubjectPublicKeyInfo, for a signature of the given
 * kind (ECDSA signatures in their DER form, as X.509 and openssl write them). False on any
 * mismatch of key and signature kind.
 */
export async function verifyBySpki(
  spki: ArrayBuffer,
  keyAlg: Algorithm & { namedCurve?: string },
  sig: { kind: "ecdsa" | "rsa" | "ed25519"; hash?: string },
  data: ArrayBuffer,
  signature: ArrayBuffer,
): Promise<boolean> {
  if (sig.kind === "ecdsa") {
    if (keyAlg.name !== "ECDSA") return false;
    return verifyEcdsaSpki(spki, keyAlg.namedCurve!, sig.hash!, data, signature, ecdsaOffThread());
  }
  if (sig.kind === "rsa") {
    if (!keyAlg.name.startsWith("RSA")) return false;
    const key = await crypto.subtle.importKey("spki", spki, { name: "RSASSA-PKCS1-v1_5", hash: sig.hash! }, false, ["verify"]);
    return crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, signature, data);
  }
  if (keyAlg.name !== "Ed25519") return false;
  const key = await crypto.subtle.importKey("spki", spki, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify("Ed25519", key, signature, data);
}

/**
 * Where ECDSA verifications run: WebCrypto's calls run on the runtime's worker threads, off the
 * event loop, while node:crypto's synchronous call costs about 40% less CPU but runs on it.
 * With a core to spare (the process's CPU affinity allows more than one) the event loop's
 * time is the scarce one: `npm run bench -- ca` on 2 cores, unpinned, issued about 20% more
 * certificates per second with WebCrypto verifying the CSRs; confined to one core, less.
 * But no core is to spare while the event loop itself waits for a CPU (more instances than
 * cores, or other load; see LoopContention): the worker's CPU then comes out of the loop's
 * share, so the cheaper synchronous call is used. With two instances on 2 cores
 * (`npm run bench -- scale`), each event loop waited for a CPU 39-49% of the time with every
 * verification on WebCrypto (p99 42.9-137.1 ms a round); switching while crowded: 23-31% (p99
 * 25.7-52.0 ms). One instance alone stays below the threshold and keeps WebCrypto.
 */
const ECDSA_OFF_THREAD = (globalThis.navigator?.hardwareConcurrency ?? 1) > 1;
const contention = new LoopContention();
const ecdsaOffThread = () => ECDSA_OFF_THREAD && !contention.crowded();

/**
 * ECDSA verification of a DER signature over `data` with a SubjectPublicKeyInfo on `curve`,
 * on WebCrypto (`offThread`) or node:crypto. False when the key is not on that curve or the
 * signature is not strict DER.
 */
export async function verifyEcdsaSpki(spki: ArrayBuffer, curve: string, hash: string, data: ArrayBuffer, signature: ArrayBuffer, offThread: boolean): Promise<boolean> {
  const size = EC_SIZES[curve];
  // The strict DER check of the signature stays ours.
  const raw = size ? derToRaw(new Uint8Array(signature), size) : null;
  if (!raw || !NODE_HASH[hash]) return false;
  if (offThread) {
    let key: CryptoKey;
    try {
      // Refuses an SPKI whose key is on another curve.
      key = await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: curve }, false, ["verify"]);
    } catch {
      return false;
    }
    return crypto.subtle.verify({ name: "ECDSA", hash }, key, raw, data);
  }
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== NODE_CURVE[curve]) return false;
  return nodeVerify(NODE_HASH[hash]!, new Uint8Array(data), key, new Uint8Array(signature));
}

/** The WebCrypto algorithm of the CSR's key, from its key type when known (no library parse needed). */
function keyAlgorithmOf(p: ParsedCsr): Algorithm & { namedCurve?: string } {
  if (p.keyType === "P-256" || p.keyType === "P-384" || p.keyType === "P-521") return { name: "ECDSA", namedCurve: p.keyType };
  if (p.keyType === "Ed25519") return { name: "Ed25519" };
  // verifyBySpki reads only the name of an RSA key's algorithm.
  if (p.keyType.startsWith("RSA-")) return { name: "RSASSA-PKCS1-v1_5" };
  return p.csr.publicKey.algorithm as Algorithm & { namedCurve?: string };
}

/** The signed CertificationRequestInfo bytes, the SubjectPublicKeyInfo and the signature value of a CSR. */
function csrSignedParts(der: Uint8Array): { info: ArrayBuffer; spki: ArrayBuffer; signature: ArrayBuffer; oidHex: string } {
  const outer = tlv(der, 0, der.length, 0x30);
  const info = tlv(der, outer.contentStart, outer.end, 0x30);
  const version = tlv(der, info.contentStart, info.end, 0x02);
  const subject = tlv(der, version.end, info.end, 0x30);
  const spki = tlv(der, subject.end, info.end, 0x30);
  const sigAlg = tlv(der, info.end, outer.end, 0x30);
  const oid = tlv(der, sigAlg.contentStart, sigAlg.end, 0x06);
  const sig = tlv(der, sigAlg.end, outer.end, 0x03);
  if (sig.end - sig.contentStart < 2 || der[sig.contentStart] !== 0) throw new Error("signature bits");
  // ArrayBuffer slices of the one buffer: a typed array's own .buffer is materialized per copy.
  const buf = der.buffer as ArrayBuffer;
  const copy = (a: number, b: number) => buf.slice(der.byteOffset + a, der.byteOffset + b);
  const oidHex = Array.from(der.subarray(oid.contentStart, oid.end), (x) => x.toString(16).padStart(2, "0")).join("");
  return { info: copy(info.start, info.end), spki: copy(spki.start, spki.end), signature: copy(sig.contentStart + 1, sig.end), oidHex };
}

function tlv(b: Uint8Array, at: number, limit: number, tag: number): { start: number; contentStart: number; end: number } {
  if (at + 2 > limit || b[at] !== tag) throw new Error("unexpected DER");
  let len = b[at + 1]!;
  let q = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || q + n > limit) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | b[q + i]!;
    q += n;
  }
  if (q + len > limit) throw new Error("DER past its end");
  return { start: at, contentStart: q, end: q + len };
}
