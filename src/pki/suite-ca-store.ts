/**
 * Persistence of the suite CA shared by every service of the suite on one machine.
 *
 * The CA lives in one record (`suite-ca.json`) of a CreateOnceStore, usually a
 * DirectoryStore on `<dataDir>/suite-ca/`. The first service to start creates the
 * root and intermediate and publishes them with `putIfAbsent`; a service that
 * loses the race drops its own CA and loads the winner's, so all services end up
 * with one CA and no lock file can be left behind by a crash.
 *
 * Guarantees: certificates are stored in clear; private keys only as PKCS#8
 * sealed by the suite CA sealer (see sealer.ts), each under a context naming the
 * key and the serial of its certificate, so keys cannot be swapped between
 * records; on load the intermediate's signature is verified with the root key and
 * each private key is checked against its certificate. Loaded keys are
 * non-extractable.
 */
import { AppError } from "../service/errors.ts";
import { corrupt, decodeRecord, encodeRecord, fromBase64, toBase64 } from "./codec.ts";
import { exportPkcs8, importKeyForCertificate, importP256Pkcs8, toPem } from "./keys.ts";
import type { Sealer } from "./sealer.ts";
import type { CreateOnceStore } from "./store.ts";
import { createSuiteCa, type SuiteCa } from "./suite-ca.ts";
import * as x509 from "./x509.ts";

/** Name of the suite CA record in its store. */
export const SUITE_CA_RECORD = "suite-ca.json";
const FORMAT = "cryptoutil-suite-ca/v1";
const FIELDS = ["rootCertPem", "intermediateCertPem", "rootKeySealed", "intermediateKeySealed"] as const;

/** Where the suite CA is kept and how its keys are sealed. */
export interface SuiteCaLocation {
  store: CreateOnceStore;
  sealer: Sealer;
}

function keyContext(level: "root" | "intermediate", cert: x509.X509Certificate): string {
  return `cryptoutil/suite-ca/v1/${level}-key/${cert.serialNumber.toLowerCase()}`;
}

async function encodeCa(ca: SuiteCa, sealer: Sealer): Promise<Uint8Array> {
  const rootPk = await exportPkcs8(ca.root.key);
  const intPk = await exportPkcs8(ca.intermediate.key);
  try {
    return encodeRecord({
      format: FORMAT,
      rootCertPem: ca.root.cert.toString("pem"),
      intermediateCertPem: ca.intermediate.cert.toString("pem"),
      rootKeySealed: toBase64(await sealer.seal(rootPk, keyContext("root", ca.root.cert))),
      intermediateKeySealed: toBase64(await sealer.seal(intPk, keyContext("intermediate", ca.intermediate.cert))),
    });
  } finally {
    rootPk.fill(0);
    intPk.fill(0);
  }
}

async function openKey(sealer: Sealer, sealedB64: string, context: string): Promise<Uint8Array> {
  let sealed: Uint8Array;
  try {
    sealed = fromBase64(sealedB64);
  } catch (cause) {
    throw corrupt("suite CA", cause);
  }
  try {
    return await sealer.open(sealed, context);
  } catch (cause) {
    throw new AppError(
      "config_invalid",
      "tls: the stored suite CA key does not open with these unseal secrets; every service sharing a suite CA directory must use the same unseal secret files",
      { cause },
    );
  }
}

async function decodeCa(bytes: Uint8Array, sealer: Sealer): Promise<SuiteCa> {
  const rec = decodeRecord(bytes, FORMAT, FIELDS, "suite CA");
  let rootCert: x509.X509Certificate;
  let intCert: x509.X509Certificate;
  try {
    rootCert = new x509.X509Certificate(rec.rootCertPem);
    intCert = new x509.X509Certificate(rec.intermediateCertPem);
  } catch (cause) {
    throw corrupt("suite CA", cause);
  }
  if (!(await intCert.verify({ publicKey: rootCert.publicKey, signatureOnly: true }))) throw corrupt("suite CA");

  const rootPk = await openKey(sealer, rec.rootKeySealed, keyContext("root", rootCert));
  const intPk = await openKey(sealer, rec.intermediateKeySealed, keyContext("intermediate", intCert));
  try {
    await importKeyForCertificate(rootPk, rootCert, "suite root CA");
    await importKeyForCertificate(intPk, intCert, "suite intermediate CA");
    return {
      root: { cert: rootCert, key: await importP256Pkcs8(rootPk, false) },
      intermediate: { cert: intCert, key: await importP256Pkcs8(intPk, false) },
    };
  } finally {
    rootPk.fill(0);
    intPk.fill(0);
  }
}

/**
 * Loads the suite CA from `location`, creating and publishing it first when absent.
 * Safe to call from several processes at once: exactly one CA ends up stored and returned to all.
 *
 * @example
 *   const ca = await loadOrCreateSuiteCa({ store: new DirectoryStore(dir), sealer: await suiteCaSealerFromFiles(files) });
 */
export async function loadOrCreateSuiteCa(location: SuiteCaLocation): Promise<{ ca: SuiteCa; created: boolean }> {
  const existing = await location.store.get(SUITE_CA_RECORD);
  if (existing !== undefined) return { ca: await decodeCa(existing, location.sealer), created: false };

  const fresh = await createSuiteCa();
  const result = await location.store.putIfAbsent(SUITE_CA_RECORD, await encodeCa(fresh, location.sealer));
  // Whoever won, decode what is stored: it proves the record round-trips and gives non-extractable keys.
  return { ca: await decodeCa(result.bytes, location.sealer), created: result.created };
}

/** The root certificate as PEM: the trust anchor clients need (`curl --cacert`). */
export function trustBundlePem(ca: SuiteCa): string {
  return toPem("CERTIFICATE", new Uint8Array(ca.root.cert.rawData));
}
