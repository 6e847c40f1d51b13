/**
 * Server-side browser sessions for `/browser/**` (backend-for-frontend).
 *
 * The cookie holds a random 256-bit id; the database holds only its SHA-256, so
 * a database leak yields no usable cookie. The CSRF token is HMAC(csrfKey, id):
 * the page reads it from the session endpoint and echoes it in `X-CSRF-Token` on
 * every unsafe request; it is compared in constant time. Sessions have an idle
 * and an absolute timeout and can be revoked server-side.
 */
import type { Kysely } from "kysely";
import { AppError } from "../service/errors.ts";
import { equalStrings } from "../crypto/constant-time.ts";
import type { Principal } from "./bearer.ts";

export const SESSION_COOKIE = "__Host-cryptoutil_session";

export interface SessionTable {
  id_hash: string;
  tenant: string;
  subject: string;
  /** The user's name for display ("signed in as"), from the ID token; null when it gave none. */
  name: string | null;
  /** The identity provider's session id (OIDC `sid`) this session came from, for back-channel logout. */
  op_sid: string | null;
  scopes: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  revoked: number;
}

/** Migration creating the sessions table; part of the template's migrations. */
export async function createSessionTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("sessions")
    .ifNotExists()
    .addColumn("id_hash", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("scopes", "text", (c) => c.notNull())
    .addColumn("created_at", "integer", (c) => c.notNull())
    .addColumn("last_seen_at", "integer", (c) => c.notNull())
    .addColumn("expires_at", "integer", (c) => c.notNull())
    .addColumn("revoked", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.createIndex("sessions_by_subject").ifNotExists().on("sessions").columns(["tenant", "subject"]).execute();
}

/** Migration adding the identity provider's session id to sessions (back-channel logout). */
export async function addSessionOpSid(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("sessions").addColumn("op_sid", "text").execute();
  await db.schema.createIndex("sessions_by_op_sid").ifNotExists().on("sessions").columns(["tenant", "op_sid"]).execute();
}

/** Migration adding the display name to sessions. */
export async function addSessionName(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("sessions").addColumn("name", "text").execute();
}

const enc = new TextEncoder();
const b64url = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");

export interface SessionTimeouts {
  idleS: number;
  absoluteS: number;
}

export class SessionStore {
  constructor(
    private readonly db: Kysely<{ sessions: SessionTable }>,
    private readonly csrfKey: CryptoKey,
    private readonly timeouts: SessionTimeouts,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  private static async hashId(id: string): Promise<string> {
    return hex(await crypto.subtle.digest("SHA-256", enc.encode(id)));
  }

  /** Starts a session (a login); returns the cookie value and its CSRF token. */
  async create(p: { tenant: string; subject: string; scopes: string[]; name?: string; opSid?: string }): Promise<{ id: string; csrfToken: string }> {
    const id = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const t = this.now();
    await this.db
      .insertInto("sessions")
      .values({
        id_hash: await SessionStore.hashId(id),
        tenant: p.tenant,
        subject: p.subject,
        name: p.name?.slice(0, 200) ?? null,
        op_sid: p.opSid?.slice(0, 200) ?? null,
        scopes: p.scopes.join(" "),
        created_at: t,
        last_seen_at: t,
        expires_at: t + this.timeouts.absoluteS,
        revoked: 0,
      })
      .execute();
    return { id, csrfToken: await this.csrfToken(id) };
  }

  /** Rotates a session id (e.g. at privilege change): the old id stops working. */
  async rotate(oldId: string): Promise<{ id: string; csrfToken: string }> {
    const row = await this.lookup(oldId);
    await this.revoke(oldId);
    return this.create({ tenant: row.tenant, subject: row.subject, scopes: row.scopes.split(" ").filter(Boolean), name: row.name ?? undefined, opSid: row.op_sid ?? undefined });
  }

  async csrfToken(id: string): Promise<string> {
    return b64url(new Uint8Array(await crypto.subtle.sign("HMAC", this.csrfKey, enc.encode("csrf:" + id))));
  }

  private async lookup(id: string): Promise<SessionTable> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(id)) throw new AppError("unauthenticated", "no valid session");
    const row = await this.db.selectFrom("sessions").selectAll().where("id_hash", "=", await SessionStore.hashId(id)).executeTakeFirst();
    const t = this.now();
    if (!row || row.revoked || row.expires_at <= t || row.last_seen_at + this.timeouts.idleS <= t) {
      throw new AppError("unauthenticated", "the session has ended; log in again");
    }
    return row;
  }

  /** Resolves a cookie to a principal, refreshing the idle timer (at most once a minute). */
  async authenticate(id: string): Promise<Principal> {
    const row = await this.lookup(id);
    const t = this.now();
    if (t - row.last_seen_at >= 60) {
      await this.db.updateTable("sessions").set({ last_seen_at: t }).where("id_hash", "=", row.id_hash).execute();
    }
    return { kind: "browser", tenant: row.tenant, subject: row.subject, name: row.name ?? undefined, scopes: new Set(row.scopes.split(" ").filter(Boolean)) };
  }

  async verifyCsrf(id: string, token: string | null): Promise<void> {
    if (!token || !equalStrings(token, await this.csrfToken(id))) {
      throw new AppError("csrf_failed", "missing or wrong X-CSRF-Token header");
    }
  }

  async revoke(id: string): Promise<void> {
    await this.db.updateTable("sessions").set({ revoked: 1 }).where("id_hash", "=", await SessionStore.hashId(id)).execute();
  }

  /** Ends every session of a user (server-side logout everywhere). */
  async revokeAll(tenant: string, subject: string): Promise<void> {
    await this.db.updateTable("sessions").set({ revoked: 1 }).where("tenant", "=", tenant).where("subject", "=", subject).execute();
  }

  /**
   * Back-channel logout: ends the sessions that came from the identity provider's session `sid`
   * (of `subject` too, when given), or with no `sid` every session of `subject`. Returns how many.
   */
  async revokeByOp(tenant: string, by: { sid?: string; subject?: string }): Promise<number> {
    if (!by.sid && !by.subject) return 0;
    let q = this.db.updateTable("sessions").set({ revoked: 1 }).where("tenant", "=", tenant).where("revoked", "=", 0);
    if (by.sid) q = q.where("op_sid", "=", by.sid);
    if (by.subject) q = q.where("subject", "=", by.subject);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Deletes ended sessions; run periodically. */
  async sweep(): Promise<void> {
    const t = this.now();
    await this.db
      .deleteFrom("sessions")
      .where((eb) => eb.or([eb("revoked", "=", 1), eb("expires_at", "<=", t), eb("last_seen_at", "<=", t - this.timeouts.idleS)]))
      .execute();
  }
}

export function sessionCookie(id: string, maxAgeS: number): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}`;
}

export function readCookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
