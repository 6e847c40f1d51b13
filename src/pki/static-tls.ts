/**
 * TLS material in *static* mode: a certificate chain and key given by the
 * operator, as PEM data or files (the key typically a Docker/Kubernetes secret file).
 *
 * Guarantees: the chain must hold at least one certificate, leaf first, each
 * signed by the next; the leaf must be within its validity period; the key must
 * be an unencrypted PKCS#8 key whose public half is the leaf's public key. Any
 * failure is AppError("config_invalid") naming the input at fault; key bytes never
 * appear in messages. Files larger than 1 MiB are refused.
 */
import { AppError } from "../service/errors.ts";
import { decodePemBlocks, type PemBlock } from "./codec.ts";
import { importKeyForCertificate, toArrayBuffer, toPem } from "./keys.ts";
import { sansOf } from "./leaf.ts";
import type { TlsMaterial } from "./tls-material.ts";
import * as x509 from "./x509.ts";

/** Where the static chain, key and (optional) client trust bundle come from; give one source of each. */
export interface StaticTlsSource {
  certPath?: string;
  certPem?: string;
  /** Path of the key file (a secret file); `keyFile` is the same thing under the name secrets use. */
  keyPath?: string;
  keyFile?: string;
  keyPem?: string;
  caPath?: string;
  caPem?: string;
  now?: Date;
}

const MAX_FILE_BYTES = 1 << 20;

async function readText(path: string, what: string): Promise<string> {
  const fs = await import("node:fs/promises");
  let bytes: Uint8Array;
  try {
    const st = await fs.stat(path);
    if (!st.isFile() || st.size > MAX_FILE_BYTES) {
      throw new AppError("config_invalid", `tls: ${what} ${path} is not a regular file of at most 1 MiB`);
    }
    bytes = new Uint8Array(await fs.readFile(path));
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError("config_invalid", `tls: ${what} ${path} cannot be read`, { cause: e });
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } finally {
    bytes.fill(0);
  }
}

async function pick(
  pathOpts: Array<[string, string | undefined]>,
  pem: string | undefined,
  what: string,
  required: boolean,
): Promise<string | undefined> {
  const given = pathOpts.filter(([, v]) => v !== undefined);
  const count = given.length + (pem !== undefined ? 1 : 0);
  if (count > 1) throw new AppError("config_invalid", `tls: give the ${what} either as a file or as PEM data, not both`);
  if (count === 0) {
    if (required) throw new AppError("config_invalid", `tls: static mode needs the ${what} (file path or PEM data)`);
    return undefined;
  }
  return pem ?? readText(given[0]![1]!, `${what} file`);
}

function pemBlocks(text: string, what: string): PemBlock[] {
  const out = decodePemBlocks(text, () => new AppError("config_invalid", `tls: the ${what} holds a PEM block that is not valid base64`));
  if (out.length === 0) throw new AppError("config_invalid", `tls: the ${what} holds no PEM block`);
  return out;
}

function parseCerts(text: string, what: string): x509.X509Certificate[] {
  const blocks = pemBlocks(text, what);
  return blocks.map((b, i) => {
    if (b.label !== "CERTIFICATE") {
      throw new AppError("config_invalid", `tls: the ${what} holds a "${b.label}" block, only CERTIFICATE blocks are allowed`);
    }
    try {
      return new x509.X509Certificate(toArrayBuffer(b.der));
    } catch (cause) {
      throw new AppError("config_invalid", `tls: certificate #${i + 1} of the ${what} cannot be parsed`, { cause });
    }
  });
}

function pkcs8From(text: string): Uint8Array {
  const blocks = pemBlocks(text, "private key");
  if (blocks.length !== 1) throw new AppError("config_invalid", "tls: the private key must hold exactly one PEM block");
  const b = blocks[0]!;
  if (b.label === "PRIVATE KEY") return b.der;
  if (b.label === "ENCRYPTED PRIVATE KEY") {
    throw new AppError("config_invalid", "tls: the private key is encrypted; give an unencrypted PKCS#8 key through a secret file");
  }
  if (b.label === "EC PRIVATE KEY" || b.label === "RSA PRIVATE KEY") {
    throw new AppError(
      "config_invalid",
      `tls: the private key is a legacy "${b.label}"; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)`,
    );
  }
  throw new AppError("config_invalid", `tls: the private key file holds a "${b.label}" block, expected "PRIVATE KEY"`);
}

/**
 * Loads and validates operator-provided TLS material.
 *
 * @example
 *   const material = await loadStaticTlsMaterial({ certPath: "tls/chain.pem", keyFile: "/run/secrets/tls_key" });
 * @throws AppError("config_invalid") naming what is wrong.
 */
export async function loadStaticTlsMaterial(src: StaticTlsSource): Promise<TlsMaterial> {
  const now = src.now ?? new Date();
  const certText = (await pick([["certPath", src.certPath]], src.certPem, "certificate chain", true))!;
  const chain = parseCerts(certText, "certificate chain");
  const leaf = chain[0]!;
  for (let i = 0; i + 1 < chain.length; i++) {
    const ok = await chain[i]!.verify({ publicKey: chain[i + 1]!.publicKey, signatureOnly: true }).catch(() => false);
    if (!ok) {
      throw new AppError("config_invalid", `tls: certificate #${i + 1} of the chain is not signed by certificate #${i + 2} (order: leaf first, then issuers)`);
    }
  }
  if (leaf.notBefore.getTime() > now.getTime()) {
    throw new AppError("config_invalid", `tls: the certificate is not valid before ${leaf.notBefore.toISOString()}`);
  }
  if (leaf.notAfter.getTime() <= now.getTime()) {
    throw new AppError("config_invalid", `tls: the certificate expired on ${leaf.notAfter.toISOString()}`);
  }

  const keyText = (await pick([["keyPath", src.keyPath], ["keyFile", src.keyFile]], src.keyPem, "private key", true))!;
  const pkcs8 = pkcs8From(keyText);
  try {
    await importKeyForCertificate(pkcs8, leaf, "tls");

    let caBundlePem = "";
    const caText = await pick([["caPath", src.caPath]], src.caPem, "CA bundle", false);
    if (caText !== undefined) {
      caBundlePem = parseCerts(caText, "CA bundle").map((c) => toPem("CERTIFICATE", new Uint8Array(c.rawData))).join("");
    } else {
      // Without a configured bundle, a self-signed top of the chain is the trust anchor; otherwise none is known.
      const top = chain[chain.length - 1]!;
      if (await top.isSelfSigned().catch(() => false)) caBundlePem = toPem("CERTIFICATE", new Uint8Array(top.rawData));
    }
    let sans = { dnsNames: [] as string[], ipAddresses: [] as string[] };
    try {
      sans = sansOf(leaf);
    } catch {
      // A static certificate may carry names we do not model (e.g. wildcards); they are informational here.
    }
    return {
      certChainPem: chain.map((c) => toPem("CERTIFICATE", new Uint8Array(c.rawData))).join(""),
      keyPem: toPem("PRIVATE KEY", pkcs8),
      caBundlePem,
      leaf: { serialNumber: leaf.serialNumber.toLowerCase(), notAfter: leaf.notAfter, sans },
    };
  } finally {
    pkcs8.fill(0);
  }
}
