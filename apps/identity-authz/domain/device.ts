/**
 * The device authorization grant (RFC 8628): the device asks for a device_code and a short
 * user_code; the user types the user_code at `{issuer}/device` on another screen, signs in at
 * identity-idp through the same signed hand-off as `/authorize`, and approves or denies the
 * request on the page that follows; the device polls the token endpoint meanwhile
 * (`TokenService.deviceCode`).
 *
 * State is in the database, every step is a conditional update (several instances agree):
 * device codes are 256-bit random values stored as SHA-256; user codes are 8 letters of a
 * 20-consonant alphabet (RFC 8628 §6.1: no vowels, no look-alike digits; about 34.6 bits),
 * entered case- and punctuation-insensitively; failed entries are counted per tenant and client
 * address and refused past `app.device_max_failures` in 10 minutes; the approval page carries a
 * one-time 256-bit token stored as SHA-256.
 */
import type { DataProtector } from "../../../src/service/context.ts";
import type { AuthzConfig } from "../config.ts";
import type { AuthzStore, DeviceCodeRow } from "../store.ts";
import type { RegisteredClient } from "./registry.ts";
import { DEVICE_GRANT, deviceCtx, splitScope, type DeviceParams, type LoginFacts } from "./tokens.ts";
import { oauthError } from "./oauth-error.ts";
import { FrontChannelError } from "./authorize.ts";
import { nowS, randomToken, sha256Hex } from "./crypto.ts";
import type { Form } from "./client-auth.ts";

export const USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LENGTH = 8;
/** The window of the failed-entry count. */
export const ATTEMPT_WINDOW_S = 600;

const enc = new TextEncoder();

export interface DeviceAuthorizationResponse {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

/** A user code for display: `BCDF-GHJK`. */
export const displayUserCode = (c: string) => `${c.slice(0, 4)}-${c.slice(4)}`;

/** What the user typed, normalized (upper case, separators dropped); null if it cannot be a user code. */
export function normalizeUserCode(typed: string | undefined): string | null {
  if (!typed || typed.length > 64) return null;
  const c = typed.toUpperCase().replace(/[\s-]/g, "");
  if (c.length !== USER_CODE_LENGTH) return null;
  for (const ch of c) if (!USER_CODE_ALPHABET.includes(ch)) return null;
  return c;
}

function newUserCode(): string {
  // 256 is not a multiple of 20: draw bytes below 240 only, so every letter is equally likely.
  let out = "";
  while (out.length < USER_CODE_LENGTH) {
    for (const b of crypto.getRandomValues(new Uint8Array(16))) {
      if (b < 240 && out.length < USER_CODE_LENGTH) out += USER_CODE_ALPHABET[b % 20];
    }
  }
  return out;
}

export class DeviceService {
  constructor(
    private readonly store: AuthzStore,
    private readonly protector: DataProtector,
    private readonly cfg: AuthzConfig,
    private readonly issuer: (tenant: string) => string,
  ) {}

  /** POST /device_authorization: the client is authenticated (or public). */
  async authorize(tenant: string, client: RegisteredClient, form: Form): Promise<DeviceAuthorizationResponse> {
    if (!client.grant_types.includes(DEVICE_GRANT)) throw oauthError("unauthorized_client", "this client may not use the device grant");
    const scopeRaw = form.get("scope");
    if (scopeRaw !== undefined && scopeRaw.length > 2000) throw oauthError("invalid_request", "scope is too long");
    const scopes = splitScope(scopeRaw);
    for (const s of scopes) if (!client.scopes.includes(s)) throw oauthError("invalid_scope", `scope '${s.slice(0, 64)}' is not allowed for this client`);
    const resource = form.get("resource");
    if (resource !== undefined && !client.audiences.includes(resource)) throw oauthError("invalid_target", "this client may not request that resource");
    const params: DeviceParams = { scope: [...new Set(scopes)].join(" "), ...(resource !== undefined ? { resource } : {}) };
    const t = nowS();
    const ttl = this.cfg.device_code_ttl_s;
    for (let i = 0; i < 5; i++) {
      const deviceCode = randomToken(32);
      const hash = await sha256Hex(deviceCode);
      const row: DeviceCodeRow = {
        hash, tenant, client_id: client.client_id, user_code: newUserCode(),
        params: await this.protector.encrypt(enc.encode(JSON.stringify(params)), deviceCtx(tenant, hash)),
        status: "pending", login: null, confirm_hash: null, poll_interval: this.cfg.device_poll_interval_s, last_poll: 0, grant_id: null,
        created_at: t, expires_at: t + ttl,
      };
      if (!(await this.store.insertDeviceCode(row))) continue; // user code taken: draw another
      const uri = `${this.issuer(tenant)}/device`;
      const shown = displayUserCode(row.user_code);
      return {
        device_code: deviceCode,
        user_code: shown,
        verification_uri: uri,
        verification_uri_complete: `${uri}?user_code=${shown}`,
        expires_in: ttl,
        interval: this.cfg.device_poll_interval_s,
      };
    }
    throw oauthError("server_error", "no free user code; try again");
  }

  /**
   * The pending request a typed user code names. Failures count against `source` (the client
   * address); past the limit every entry is refused until the window ends, found or not.
   */
  async enter(tenant: string, typed: string | undefined, source: string): Promise<DeviceCodeRow> {
    const limit = this.cfg.device_max_failures;
    if ((await this.store.deviceFailures(tenant, source, ATTEMPT_WINDOW_S)) >= limit) {
      throw new FrontChannelError("slow_down", "too many wrong codes from this address; wait 10 minutes", { status: 429 });
    }
    const code = normalizeUserCode(typed);
    const row = code ? await this.store.pendingDeviceByUserCode(tenant, code) : undefined;
    if (!row) {
      await this.store.deviceFailure(tenant, source, ATTEMPT_WINDOW_S);
      throw new FrontChannelError("invalid_request", "this code is unknown, expired or already used; check it on your device", { status: 400 });
    }
    return row;
  }

  /** The scope a device request asked for. */
  async scopeOf(row: DeviceCodeRow): Promise<string> {
    return (JSON.parse(new TextDecoder().decode(await this.protector.decrypt(row.params, deviceCtx(row.tenant, row.hash)))) as DeviceParams).scope;
  }

  /** After the sign-in: keeps the user's login with the request, returns the one-time approval token. */
  async signedIn(tenant: string, hash: string, login: LoginFacts & { scope: string }): Promise<string> {
    const token = randomToken(32);
    const sealed = await this.protector.encrypt(enc.encode(JSON.stringify(login)), deviceCtx(tenant, hash));
    if (!(await this.store.signInDevice(tenant, hash, sealed, await sha256Hex(token)))) {
      throw new FrontChannelError("invalid_request", "this device request expired or was already decided", { status: 400 });
    }
    return token;
  }

  /** The user's decision, once; returns the client it was for. */
  async decide(tenant: string, token: string | undefined, approve: boolean): Promise<DeviceCodeRow> {
    if (!token || token.length > 100) throw new FrontChannelError("invalid_request", "the approval token is missing", { status: 400 });
    const row = await this.store.decideDevice(tenant, await sha256Hex(token), approve ? "approved" : "denied");
    if (!row) throw new FrontChannelError("invalid_request", "this device request expired or was already decided", { status: 400 });
    return row;
  }
}
