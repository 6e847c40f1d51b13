/**
 * The offline root ceremony CLI of pki-ca.
 *
 *   bun run apps/pki-ca/cli.ts root init --dir DIR --cn NAME [--key-type P-384|P-256|RSA-4096] [--days 7300] [--path-len N] --passphrase-file FILE
 *   bun run apps/pki-ca/cli.ts root init --dir DIR --cn NAME [--key-type P-384|P-256] [--days 7300] [--path-len N] --hsm-module M --hsm-token LABEL --hsm-pin-file F [--hsm-key-label L]
 *   bun run apps/pki-ca/cli.ts root sign --dir DIR (--passphrase-file FILE | --hsm-module M --hsm-pin-file F [--hsm-token LABEL]) --csr issuing.csr.pem --out issuing.crt.pem [--days 1825] [--path-len 0]
 *
 * Exit codes: 0 done, 2 refused (bad arguments, missing file, wrong passphrase or PIN, bad
 * CSR, existing output or key label), 1 an unexpected fault. Errors are one line on stderr,
 * never a stack. The root key lives in a passphrase-encrypted PKCS#8 file, or (with the
 * --hsm-* flags) inside a PKCS#11 token as a non-extractable key (ceremony/hsm-root.ts).
 */
import { readFile } from "node:fs/promises";
import { AppError } from "../../src/service/errors.ts";
import { assertAbsent, KEY_FILE_DESCRIPTION, readPassphrase, ROOT_KEY_TYPES, rootInit, rootSign, writeNewFile, type RootKeyType } from "./ceremony/root.ts";
import { rootInitHsm, rootSignHsm, type HsmAccess } from "./ceremony/hsm-root.ts";

const USAGE = `usage:
  cli.ts root init --dir DIR --cn NAME [--key-type P-384|P-256|RSA-4096] [--days 7300] [--path-len N] --passphrase-file FILE
  cli.ts root init --dir DIR --cn NAME [--key-type P-384|P-256] [--days 7300] [--path-len N] --hsm-module M --hsm-token LABEL --hsm-pin-file F [--hsm-key-label L]
  cli.ts root sign --dir DIR (--passphrase-file FILE | --hsm-module M --hsm-pin-file F [--hsm-token LABEL]) --csr CSR.pem --out CERT.pem [--days 1825] [--path-len 0]`;
const HSM_FLAGS = ["hsm-module", "hsm-token", "hsm-pin-file"];

/** The HSM access the flags name, or undefined when none is given; passphrase and HSM exclude each other. */
function hsmAccess(f: Map<string, string>, tokenRequired: boolean): HsmAccess | undefined {
  const given = [...HSM_FLAGS, "hsm-key-label"].filter((n) => f.has(n));
  if (given.length === 0) return undefined;
  if (f.has("passphrase-file")) throw new UsageError("--passphrase-file and --hsm-* exclude each other");
  return { modulePath: required(f, "hsm-module"), tokenLabel: tokenRequired ? required(f, "hsm-token") : f.get("hsm-token"), pinFile: required(f, "hsm-pin-file") };
}

class UsageError extends Error {}

function parseFlags(args: string[], allowed: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf("=");
    const name = a.startsWith("--") ? (eq > 0 ? a.slice(2, eq) : a.slice(2)) : "";
    if (!name || !allowed.includes(name)) throw new UsageError(`unknown argument ${a}`);
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === "") throw new UsageError(`--${name} needs a value`);
    if (out.has(name)) throw new UsageError(`--${name} given twice`);
    out.set(name, value);
  }
  return out;
}

function required(f: Map<string, string>, name: string): string {
  const v = f.get(name);
  if (v === undefined) throw new UsageError(`--${name} is required`);
  return v;
}

function int(f: Map<string, string>, name: string): number | undefined {
  const v = f.get(name);
  if (v === undefined) return undefined;
  if (!/^\d{1,6}$/.test(v)) throw new UsageError(`--${name} must be a whole number`);
  return Number(v);
}

function printResult(lines: Array<[string, string]>, fp: { sha256: string; sha1: string }): void {
  for (const [k, v] of lines) console.log(`${k}: ${v}`);
  console.log(`SHA-256 fingerprint: ${fp.sha256}`);
  console.log(`SHA-1 fingerprint: ${fp.sha1}`);
}

async function run(argv: string[]): Promise<void> {
  const [group, cmd, ...rest] = argv;
  if (group !== "root" || (cmd !== "init" && cmd !== "sign")) throw new UsageError(group === undefined ? "no command given" : `unknown command ${[group, cmd].filter(Boolean).join(" ")}`);
  if (cmd === "init") {
    const f = parseFlags(rest, ["dir", "cn", "key-type", "days", "path-len", "passphrase-file", ...HSM_FLAGS, "hsm-key-label"]);
    const keyType = f.get("key-type") ?? "P-384";
    if (!(ROOT_KEY_TYPES as readonly string[]).includes(keyType)) throw new UsageError(`--key-type must be one of ${ROOT_KEY_TYPES.join(", ")}`);
    const dir = required(f, "dir");
    const cn = required(f, "cn");
    const hsm = hsmAccess(f, true);
    if (hsm) {
      const r = await rootInitHsm({ dir, cn, keyType: keyType as RootKeyType, days: int(f, "days"), pathLen: int(f, "path-len"), hsm, keyLabel: f.get("hsm-key-label") });
      printResult(
        [
          ["root certificate", r.certPath],
          ["root key", `token '${r.token}', key label '${r.keyLabel}' (non-extractable, in the HSM)`],
          ["subject", r.subject],
          ["serial", r.serial],
          ["not after", r.notAfter.toISOString()],
        ],
        r.fingerprints,
      );
      return;
    }
    if (!f.has("passphrase-file")) throw new UsageError("--passphrase-file, or --hsm-module, --hsm-token and --hsm-pin-file, is required");
    const passphrase = await readPassphrase(required(f, "passphrase-file"), { forNewKey: true });
    try {
      const r = await rootInit({ dir, cn, keyType: keyType as RootKeyType, days: int(f, "days"), pathLen: int(f, "path-len"), passphrase });
      printResult(
        [
          ["root certificate", r.certPath],
          ["root key", `${r.keyPath} (${KEY_FILE_DESCRIPTION})`],
          ["subject", r.subject],
          ["serial", r.serial],
          ["not after", r.notAfter.toISOString()],
        ],
        r.fingerprints,
      );
    } finally {
      passphrase.fill(0);
    }
    return;
  }
  const f = parseFlags(rest, ["dir", "passphrase-file", "csr", "out", "days", "path-len", ...HSM_FLAGS]);
  const dir = required(f, "dir");
  const out = required(f, "out");
  const csrPath = required(f, "csr");
  let csrPem: string;
  try {
    csrPem = await readFile(csrPath, "utf8");
  } catch (e) {
    throw new AppError("not_found", `cannot read CSR ${csrPath}${(e as { code?: string }).code === "ENOENT" ? ": no such file" : ""}`);
  }
  await assertAbsent(out);
  const hsm = hsmAccess(f, false);
  if (!hsm && !f.has("passphrase-file")) throw new UsageError("--passphrase-file, or --hsm-module and --hsm-pin-file, is required");
  const passphrase = hsm ? new Uint8Array(0) : await readPassphrase(required(f, "passphrase-file"));
  try {
    const opts = { dir, csrPem, days: int(f, "days"), pathLen: int(f, "path-len") };
    const r = hsm ? await rootSignHsm({ ...opts, hsm }) : await rootSign({ ...opts, passphrase });
    await writeNewFile(out, r.pem);
    printResult(
      [
        ["issuing CA certificate", out],
        ["subject", r.subject],
        ["serial", r.serial],
        ["not after", r.notAfter.toISOString() + (r.capped ? " (capped at the root's notAfter)" : "")],
      ],
      r.fingerprints,
    );
  } finally {
    passphrase.fill(0);
  }
}

try {
  await run(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    console.error(`error: ${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (e instanceof AppError) {
    console.error(`error: ${e.message} (${e.code})`);
    process.exit(2);
  }
  console.error(`error: unexpected failure: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
