/**
 * identity-idp's own browser sessions (cookie `__Host-idp_session`), apart from the template's
 * app sessions: one exists before login to carry the login in progress and its CSRF token.
 *
 * Guarantees: the cookie is a random 256-bit id and only its SHA-256 is stored; the id is
 * rotated whenever the session gains privilege (password accepted, login complete); idle and
 * absolute timeouts are enforced on every read; revocation is server-side. The CSRF token
 * is HMAC(service key, id) (synchronizer token), compared in constant time. The login in
 * progress (the login challenge, with its login_hint, the pending user, recovery codes about to
 * be shown) is barrier-encrypted, bound to its row (tenant and id hash).
 */
import type { Kysely } from "kysely";
import { AppError } from "../../../src/service/errors.ts";
import { readCookie, type SessionStore } from "../../../src/auth/session.ts";
import { equalStrings } from "../../../src/crypto/constant-time.ts";
import type { DataProtector } from "../../../src/service/context.ts";
import type { IdpDb, IdpSessionRow } from "../store.ts";

export const IDP_COOKIE = "__Host-idp_session";

/** The login in progress, kept server-side in the session row. */
export interface LoginFlow {
  /** The raw login_challenge JWS (re-verified on use) and its verified claims. */
  challenge?: string;
  /** Password accepted for this user; second factor or enrolment pending. */
  pendingUser?: string;
  pendingAt?: number;
  stage?: "mfa" | "enroll";
  /** The `amr` of the first factor that started the pending step (`pwd`, `email`). */
  firstAmr?: string[];
  /** A WebAuthn ceremony under way: its challenge (single use) and what it is for. */
  webauthn?: { challenge: string; purpose: "register" | "login" | "mfa"; at: number; name?: string };
  /** Recovery codes just generated, shown once by the next page. */
  showCodes?: string[];
}

export interface IdpSession {
  id: string;
  row: IdpSessionRow;
  flow: LoginFlow;
  csrf: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
/** The barrier context of a session row's flow: tenant and id hash, so a ciphertext opens in its own row only. */
const flowCtx = (tenant: string, idHash: string) => `identity-idp/idp_sessions/${tenant}/${idHash}/flow`;
const b64url = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const hashId = async (id: string) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(id))), (x) => x.toString(16).padStart(2, "0")).join("");

/**
 * The session id shown to identity-authz (OIDC `sid`): a hash of the row's id hash, so it names
 * the session without being usable as its cookie or its database key.
 */
export async function sidOf(idHash: string): Promise<string> {
  return b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode("sid:" + idHash))));
}

/** Told (in the background) of sessions ended by revocation, for back-channel logout. */
export type SessionsEnded = (tenant: string, sids: string[]) => void;

export class IdpSessions {
  /** Set by the service: tells identity-authz which sessions ended. */
  onEnded?: SessionsEnded;

  constructor(
    private readonly db: Kysely<IdpDb>,
    private readonly protector: DataProtector,
    /** The template's store; only its HMAC CSRF derivation is used. */
    private readonly csrfSource: SessionStore,
    private readonly timeouts: { idleS: number; absoluteS: number },
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  cookie(id: string): string {
    return `${IDP_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${this.timeouts.absoluteS}`;
  }
  static clearCookie(): string {
    return `${IDP_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`;
  }

  private async csrfOf(id: string) {
    return "i" + (await this.csrfSource.csrfToken("idp:" + id));
  }

  /** The live session of this request for `tenant`, or undefined. */
  async load(req: Request, tenant: string): Promise<IdpSession | undefined> {
    const id = readCookie(req.headers.get("cookie"), IDP_COOKIE);
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const row = await this.db.selectFrom("idp_sessions").selectAll().where("id_hash", "=", await hashId(id)).executeTakeFirst();
    const t = this.now();
    if (!row || row.revoked || row.tenant !== tenant || row.expires_at <= t || row.last_seen_at + this.timeouts.idleS <= t) return undefined;
    if (t - row.last_seen_at >= 30) await this.db.updateTable("idp_sessions").set({ last_seen_at: t }).where("id_hash", "=", row.id_hash).execute();
    return { id, row, flow: await this.openFlow(row), csrf: await this.csrfOf(id) };
  }

  private sealFlow(tenant: string, idHash: string, flow: LoginFlow): Promise<Uint8Array> {
    return this.protector.encrypt(enc.encode(JSON.stringify(flow)), flowCtx(tenant, idHash));
  }

  /** A row's flow; none (a session from before flows were sealed, whose flow was cleared) is an empty one. */
  private async openFlow(row: IdpSessionRow): Promise<LoginFlow> {
    if (!row.flow_sealed) return {};
    return JSON.parse(dec.decode(await this.protector.decrypt(new Uint8Array(row.flow_sealed), flowCtx(row.tenant, row.id_hash)))) as LoginFlow;
  }

  private lastSweep = 0;
  /** Deletes ended sessions, at most every five minutes (piggybacks on session creation). */
  private async sweep(): Promise<void> {
    const t = this.now();
    if (t - this.lastSweep < 300) return;
    this.lastSweep = t;
    await this.db
      .deleteFrom("idp_sessions")
      .where((eb) => eb.or([eb("revoked", "=", 1), eb("expires_at", "<=", t), eb("last_seen_at", "<=", t - this.timeouts.idleS)]))
      .execute();
  }

  async create(tenant: string, flow: LoginFlow = {}, user?: { userId: string; authTime: number; amr: string[] }, expiresAt?: number): Promise<IdpSession> {
    const id = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const t = this.now();
    const idHash = await hashId(id);
    const row: IdpSessionRow = {
      id_hash: idHash,
      tenant,
      user_id: user?.userId ?? null,
      auth_time: user?.authTime ?? null,
      amr: user ? user.amr.join(" ") : null,
      flow_sealed: await this.sealFlow(tenant, idHash, flow),
      created_at: t,
      last_seen_at: t,
      expires_at: expiresAt ?? t + this.timeouts.absoluteS,
      revoked: 0,
    };
    await this.sweep();
    await this.db.insertInto("idp_sessions").values(row).execute();
    return { id, row, flow, csrf: await this.csrfOf(id) };
  }

  async saveFlow(s: IdpSession, flow: LoginFlow): Promise<void> {
    s.flow = flow;
    const sealed = await this.sealFlow(s.row.tenant, s.row.id_hash, flow);
    await this.db.updateTable("idp_sessions").set({ flow_sealed: sealed }).where("id_hash", "=", s.row.id_hash).execute();
  }

  /**
   * Replaces the session with a new id (session fixation defence) carrying `flow` and, when
   * given, the authenticated user. The absolute timeout of an authenticated session restarts.
   */
  async rotate(s: IdpSession, flow: LoginFlow, user?: { userId: string; authTime: number; amr: string[] }): Promise<IdpSession> {
    await this.revoke(s);
    return this.create(s.row.tenant, flow, user, user ? undefined : s.row.expires_at);
  }

  async revoke(s: IdpSession): Promise<void> {
    await this.db.updateTable("idp_sessions").set({ revoked: 1 }).where("id_hash", "=", s.row.id_hash).execute();
  }

  /** Ends every session of a user, except `keep` (e.g. the one that changed the password). */
  async revokeUser(tenant: string, userId: string, keep?: IdpSession): Promise<void> {
    let live = this.db.selectFrom("idp_sessions").select("id_hash").where("tenant", "=", tenant).where("user_id", "=", userId).where("revoked", "=", 0);
    if (keep) live = live.where("id_hash", "!=", keep.row.id_hash);
    const rows = await live.execute();
    let q = this.db.updateTable("idp_sessions").set({ revoked: 1 }).where("tenant", "=", tenant).where("user_id", "=", userId);
    if (keep) q = q.where("id_hash", "!=", keep.row.id_hash);
    await q.execute();
    if (rows.length) this.onEnded?.(tenant, await Promise.all(rows.map((r) => sidOf(r.id_hash))));
  }

  /** Ends one session of a user by its `sid` (the admin view); false when none is live. */
  async revokeSid(tenant: string, userId: string, sid: string): Promise<boolean> {
    for (const s of await this.listUser(tenant, userId)) {
      if (s.sid !== sid) continue;
      await this.db.updateTable("idp_sessions").set({ revoked: 1 }).where("id_hash", "=", s.idHash).where("tenant", "=", tenant).execute();
      this.onEnded?.(tenant, [sid]);
      return true;
    }
    return false;
  }

  /** The live signed-in sessions of a user, newest first. */
  async listUser(tenant: string, userId: string): Promise<{ sid: string; idHash: string; created_at: number; last_seen_at: number; expires_at: number; amr: string }[]> {
    const t = this.now();
    const rows = await this.db
      .selectFrom("idp_sessions")
      .select(["id_hash", "created_at", "last_seen_at", "expires_at", "amr"])
      .where("tenant", "=", tenant)
      .where("user_id", "=", userId)
      .where("revoked", "=", 0)
      .where("expires_at", ">", t)
      .where("last_seen_at", ">", t - this.timeouts.idleS)
      .orderBy("created_at", "desc")
      .execute();
    return Promise.all(rows.map(async (r) => ({ sid: await sidOf(r.id_hash), idHash: r.id_hash, created_at: r.created_at, last_seen_at: r.last_seen_at, expires_at: r.expires_at, amr: r.amr ?? "" })));
  }

  /** Throws `csrf_failed` unless `token` is this session's synchronizer token. */
  verifyCsrf(s: IdpSession | undefined, token: unknown): void {
    if (!s || typeof token !== "string" || !equalStrings(token, s.csrf)) {
      throw new AppError("csrf_failed", "the form has expired or did not come from this site; reload the page");
    }
  }
}
