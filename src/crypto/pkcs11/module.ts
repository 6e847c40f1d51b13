/**
 * Loading a PKCS#11 module once per process and finding a token in it.
 *
 * A Cryptoki library may be initialized only once per process, so providers share one
 * loaded module per path, counted: the last `release` finalizes it. `pkcs11js` is imported
 * lazily, so importing `src/crypto` never loads a native addon unless an HSM is configured
 * (and stays importable on runtimes without N-API).
 */
import { existsSync } from "node:fs";
import type { Handle, PKCS11 } from "pkcs11js";
import { startFailure } from "./config.ts";
import { ckrName } from "./errors.ts";

export type Pkcs11Lib = typeof import("pkcs11js");

export interface LoadedModule {
  readonly lib: Pkcs11Lib;
  readonly p11: PKCS11;
  readonly path: string;
  refs: number;
}

const modules = new Map<string, LoadedModule>();
let libPromise: Promise<Pkcs11Lib> | undefined;

async function loadLib(): Promise<Pkcs11Lib> {
  libPromise ??= import("pkcs11js").then((m) => ((m as { default?: Pkcs11Lib }).default ?? m) as Pkcs11Lib);
  try {
    return await libPromise;
  } catch (e) {
    libPromise = undefined;
    throw startFailure("module_load_failed", "the pkcs11js native addon cannot be loaded on this runtime", e);
  }
}

/** Loads and initializes the module at `path` (or shares the one already loaded). */
export async function acquireModule(path: string): Promise<LoadedModule> {
  const lib = await loadLib();
  const existing = modules.get(path);
  if (existing) {
    existing.refs++;
    return existing;
  }
  if (!existsSync(path)) {
    throw startFailure("module_not_found", `PKCS#11 module not found at ${path} (check pkcs11.module_path)`);
  }
  const p11 = new lib.PKCS11();
  try {
    p11.load(path);
  } catch (e) {
    throw startFailure("module_load_failed", `PKCS#11 module at ${path} cannot be loaded`, e);
  }
  try {
    // OS locking: sessions are used from the libuv thread pool by the *Async calls.
    p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrName(e) !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") {
      throw startFailure("module_load_failed", `PKCS#11 module at ${path} failed to initialize (${ckrName(e) ?? "native error"})`, e);
    }
  }
  const m: LoadedModule = { lib, p11, path, refs: 1 };
  modules.set(path, m);
  return m;
}

/** Drops one reference; the last one finalizes the module. */
export function releaseModule(m: LoadedModule): void {
  if (--m.refs > 0) return;
  modules.delete(m.path);
  try {
    m.p11.C_Finalize();
  } catch {
    // Already finalized or torn down: nothing left to release.
  }
  try {
    m.p11.close();
  } catch {
    // Some pkcs11js builds have no close(); the library is then unloaded at exit.
  }
}

/** The slot id as a number (slot handles are native CK_ULONGs in a Buffer). */
export function slotId(slot: Handle): number {
  return slot.length >= 8 ? Number(slot.readBigUInt64LE(0)) : slot.readUInt32LE(0);
}

/** Finds the slot holding the token with `label` (or the slot with id `slot`). */
export function findSlot(m: LoadedModule, want: { tokenLabel?: string; slot?: number }): { slot: Handle; label: string } {
  const slots = m.p11.C_GetSlotList(true);
  for (const slot of slots) {
    const label = m.p11.C_GetTokenInfo(slot).label.trim();
    if (want.tokenLabel !== undefined ? label === want.tokenLabel : slotId(slot) === want.slot) return { slot, label };
  }
  const what = want.tokenLabel !== undefined ? `labelled '${want.tokenLabel}'` : `in slot ${want.slot}`;
  throw startFailure("token_not_found", `no PKCS#11 token ${what} (${slots.length} token(s) present; check pkcs11.token_label)`);
}
