/**
 * SoftHSM2 for tests: a temp directory with its own softhsm2.conf and token store, tokens
 * initialized with `softhsm2-util`, and a PIN file per token.
 *
 * `SOFTHSM2_CONF` is set for this process (SoftHSM reads it at C_Initialize), so create the
 * tokens before opening providers, and close every provider before `cleanup()`.
 * When SoftHSM2 is not installed: `CI=true` fails the test run; otherwise the caller skips
 * with the printed reason.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_PKCS11_MODULE, type Pkcs11Config } from "../../src/crypto/pkcs11/index.ts";

export interface SoftHsmToken {
  label: string;
  pin: string;
  soPin: string;
  pinFile: string;
  config: Pkcs11Config;
}

export interface SoftHsm {
  dir: string;
  confPath: string;
  modulePath: string;
  /** Initializes a new token in a free slot. */
  createToken(label: string, pin?: string): SoftHsmToken;
  /** Writes a PIN file (e.g. a wrong PIN) and returns its path. */
  pinFile(name: string, pin: string): string;
  cleanup(): void;
}

/**
 * Sets an environment variable where native code (the PKCS#11 module) reads it: Bun's
 * `process.env` does not reach the C environment, so on Bun this calls libc setenv.
 */
async function setNativeEnv(name: string, value: string): Promise<void> {
  process.env[name] = value;
  if (typeof Bun === "undefined") return;
  const { dlopen, FFIType, ptr } = await import("bun:ffi");
  const libc = dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
    setenv: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  });
  const z = (s: string) => Buffer.from(`${s}\0`, "utf8");
  const [n, v] = [z(name), z(value)];
  const rc = libc.symbols.setenv(ptr(n), ptr(v), 1);
  libc.close();
  if (rc !== 0) throw new Error(`setenv(${name}) failed`);
}

/** Where the package put the module: SOFTHSM2_MODULE, the documented default, else what dpkg lists. */
function moduleCandidates(): string[] {
  const listed = spawnSync("dpkg", ["-L", "libsofthsm2"], { encoding: "utf8" });
  const fromDpkg = listed.status === 0 ? listed.stdout.split("\n").filter((l) => l.endsWith("/libsofthsm2.so")) : [];
  return [process.env.SOFTHSM2_MODULE, DEFAULT_PKCS11_MODULE, ...fromDpkg].filter((p): p is string => !!p);
}
const MODULE_CANDIDATES = moduleCandidates();

/** Why SoftHSM2 cannot be used here, or undefined when it can. */
export function softHsmMissing(): string | undefined {
  const util = spawnSync("softhsm2-util", ["--version"], { encoding: "utf8" });
  if (util.error || util.status !== 0) return "softhsm2-util not found (apt-get install -y softhsm2)";
  if (!MODULE_CANDIDATES.some((p) => p && existsSync(p))) return "libsofthsm2.so not found (apt-get install -y softhsm2)";
  return undefined;
}

/**
 * Returns a SoftHSM environment, or undefined (after printing why) when SoftHSM2 is missing
 * outside CI. Under CI a missing SoftHSM2 throws, failing the suite.
 */
export async function setupSoftHsm(): Promise<SoftHsm | undefined> {
  const missing = softHsmMissing();
  if (missing) {
    if (process.env.CI === "true") throw new Error(`SoftHSM2 is required under CI: ${missing}`);
    console.warn(`[skip] PKCS#11 tests skipped: ${missing}`);
    return undefined;
  }
  const modulePath = MODULE_CANDIDATES.find((p) => p && existsSync(p)) as string;
  const dir = mkdtempSync(join(tmpdir(), "cryptoutil-softhsm-"));
  const tokendir = join(dir, "tokens");
  mkdirSync(tokendir);
  const confPath = join(dir, "softhsm2.conf");
  writeFileSync(confPath, `directories.tokendir = ${tokendir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  await setNativeEnv("SOFTHSM2_CONF", confPath);

  const pinFile = (name: string, pin: string): string => {
    const p = join(dir, `${name}.pin`);
    writeFileSync(p, `${pin}\n`, { mode: 0o600 });
    return p;
  };

  return {
    dir,
    confPath,
    modulePath,
    pinFile,
    createToken(label: string, pin = `user-${crypto.randomUUID().slice(0, 8)}`): SoftHsmToken {
      const soPin = `so-${crypto.randomUUID().slice(0, 8)}`;
      const r = spawnSync(
        "softhsm2-util",
        ["--init-token", "--free", "--label", label, "--so-pin", soPin, "--pin", pin],
        { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: confPath } },
      );
      if (r.status !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr || r.stdout}`);
      const file = pinFile(label, pin);
      return { label, pin, soPin, pinFile: file, config: { modulePath, tokenLabel: label, pinFile: file } };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
