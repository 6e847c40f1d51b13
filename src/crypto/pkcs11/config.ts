/**
 * Configuration of the PKCS#11 (HSM) provider, and reading its PIN from a secret file.
 *
 * The PIN is read once at start from a file (a Docker/Kubernetes secret), never from the
 * config file itself, and is never logged or put in an error message.
 */
import { readFileSync } from "node:fs";
import { AppError } from "../../service/errors.ts";

/** The standard install path of SoftHSM2 on Debian/Ubuntu: only a default, override per host. */
export const DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

export interface Pkcs11Config {
  /** Path of the PKCS#11 shared library. */
  modulePath?: string;
  /** Label of the token to use (preferred); or `slot`, the numeric slot id. One is required. */
  tokenLabel?: string;
  slot?: number;
  /** File holding the user PIN (trailing newline ignored). */
  pinFile: string;
  /** Sessions opened for concurrent operations (default 2). */
  sessions?: number;
}

/** Reasons of start-up failures, in `AppError.details.reason`. */
export type Pkcs11StartFailure =
  | "bad_config"
  | "module_not_found"
  | "module_load_failed"
  | "token_not_found"
  | "pin_file_unreadable"
  | "pin_incorrect"
  | "pin_locked"
  | "login_failed";

export const startFailure = (reason: Pkcs11StartFailure, message: string, cause?: unknown) =>
  new AppError("unavailable", message, { details: { reason }, cause });

export function readPin(pinFile: string): string {
  let text: string;
  try {
    text = readFileSync(pinFile, "utf8");
  } catch (e) {
    throw startFailure("pin_file_unreadable", "PKCS#11 PIN file cannot be read (check pkcs11.pin_file)", e);
  }
  const pin = text.replace(/\r?\n$/, "");
  if (pin.length === 0) throw startFailure("pin_file_unreadable", "PKCS#11 PIN file is empty");
  return pin;
}
