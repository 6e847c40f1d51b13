/**
 * identity-rp's rules: server-side sessions that hold the user's tokens, and their refresh.
 *
 * The cookie holds a random 256-bit id; the database holds its SHA-256 and the token set
 * encrypted by the barrier (AEAD bound to the session), so neither a database copy nor the
 * cookie alone gives a token. The access token is refreshed when it has less than
 * `refresh_before_s` left; concurrent requests of one session share one refresh (identity-authz
 * rotates refresh tokens and revokes the family on reuse), and a refresh that loses a race with
 * another instance takes the winner's tokens. A refresh the issuer refuses ends the session.
 */
import * as oauth from "oauth4webapi";
import { base64url } from "jose";
import { AppError } from "../../src/service/errors.ts";
import { equalStrings } from "../../src/crypto/constant-time.ts";
import type { DataProtector } from "../../src/service/context.ts";
import type { Logger } from "../../src/service/log.ts";
import type { RpStore, SessionRow } from "./store.ts";
import type { IssuerClient } from "./issuer.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const now = () => Math.floor(Date.now() / 1000);
const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
const hashId = async (id: string) => hex(await crypto.subtle.digest("SHA-256", enc.encode(id)));
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/** What a session keeps of the issuer's answer; never leaves the server. */
interface TokenSet {
  access_token: string;
  refresh_token?: string;
  id_token?: string;
  scope?: string;
}

/** The signed-in user, as `/session` shows it. */
export interface SessionView {
  tenant: string;
  subject: string;
  name: string | null;
  scopes: string[];
  expires_at: number;
}

export interface SessionPolicy {
  refreshBeforeS: number;
  idleS: number;
  absoluteS: number;
}

const ended = () => new AppError("unauthenticated", "no session; sign in first");

export class RpSessions {
  private readonly refreshing = new Map<string, Promise<string>>();

  constructor(
    private readonly store: RpStore,
    private readonly protector: DataProtector,
    private readonly issuer: IssuerClient,
    /** The CSRF token of a session id (the template's HMAC under the service's CSRF key). */
    readonly csrfToken: (id: string) => Promise<string>,
    private readonly policy: SessionPolicy,
    private readonly logger: Logger,
    readonly tenant: string,
  ) {}

  private context = (idHash: string) => `identity-rp/session/${idHash}`;

  private async seal(idHash: string, t: TokenSet): Promise<Uint8Array> {
    return this.protector.encrypt(enc.encode(JSON.stringify(t)), this.context(idHash));
  }
  private async open(row: SessionRow): Promise<TokenSet> {
    return JSON.parse(dec.decode(await this.protector.decrypt(row.tokens, this.context(row.id_hash)))) as TokenSet;
  }

  /** Starts a session from a finished sign-in; returns the cookie's id. */
  async create(tokens: oauth.TokenEndpointResponse, claims: oauth.IDToken): Promise<string> {
    const id = base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
    const idHash = await hashId(id);
    const t = now();
    const shown = [claims.preferred_username, claims.name, claims.email].find((x): x is string => typeof x === "string" && x.length > 0);
    await this.store.insert({
      id_hash: idHash,
      tenant: this.tenant,
      subject: claims.sub,
      sid: typeof claims.sid === "string" ? claims.sid : null,
      name: shown?.slice(0, 200) ?? null,
      tokens: await this.seal(idHash, { access_token: tokens.access_token, refresh_token: tokens.refresh_token, id_token: tokens.id_token, scope: tokens.scope }),
      access_expires_at: t + (tokens.expires_in ?? 300),
      version: 0,
      created_at: t,
      last_seen_at: t,
      expires_at: t + this.policy.absoluteS,
    });
    return id;
  }

  /** The live session of a cookie value; refreshes the idle timer at most once a minute. */
  private async live(id: string | undefined): Promise<SessionRow> {
    if (!id || !SESSION_ID.test(id)) throw ended();
    const row = await this.store.get(await hashId(id));
    const t = now();
    if (!row || row.expires_at <= t || row.last_seen_at + this.policy.idleS <= t) throw ended();
    if (t - row.last_seen_at >= 60) await this.store.touch(row.id_hash, t);
    return row;
  }

  async view(id: string | undefined): Promise<SessionView> {
    const row = await this.live(id);
    const tokens = await this.open(row);
    return { tenant: row.tenant, subject: row.subject, name: row.name, scopes: (tokens.scope ?? "").split(" ").filter(Boolean), expires_at: row.expires_at };
  }

  async verifyCsrf(id: string | undefined, token: string | null): Promise<void> {
    if (!id || !token || !equalStrings(token, await this.csrfToken(id))) throw new AppError("csrf_failed", "missing or wrong X-CSRF-Token header");
  }

  /** A usable access token of the session, refreshed first when it is close to expiry. */
  async accessToken(id: string | undefined): Promise<string> {
    const row = await this.live(id);
    if (row.access_expires_at - now() > this.policy.refreshBeforeS) return (await this.open(row)).access_token;
    let p = this.refreshing.get(row.id_hash);
    if (!p) {
      p = this.refresh(row).finally(() => this.refreshing.delete(row.id_hash));
      this.refreshing.set(row.id_hash, p);
    }
    return p;
  }

  private async refresh(row: SessionRow): Promise<string> {
    const tokens = await this.open(row);
    if (!tokens.refresh_token) {
      if (row.access_expires_at > now()) return tokens.access_token;
      await this.store.delete(row.id_hash);
      throw new AppError("unauthenticated", "the session's access has expired; sign in again");
    }
    let fresh: oauth.TokenEndpointResponse;
    try {
      fresh = await this.issuer.refresh(tokens.refresh_token);
    } catch (e) {
      if (e instanceof oauth.ResponseBodyError && e.error === "invalid_grant") {
        // Revoked, reused or expired at the issuer: the session is over.
        await this.store.delete(row.id_hash);
        throw new AppError("unauthenticated", "the sign-in was ended at the identity service; sign in again");
      }
      throw new AppError("unavailable", "the identity service could not refresh the session", { cause: e, headers: { "Retry-After": "5" } });
    }
    const next: TokenSet = { access_token: fresh.access_token, refresh_token: fresh.refresh_token ?? tokens.refresh_token, id_token: fresh.id_token ?? tokens.id_token, scope: fresh.scope ?? tokens.scope };
    const stored = await this.store.replaceTokens(row.id_hash, row.version, await this.seal(row.id_hash, next), now() + (fresh.expires_in ?? 300));
    if (!stored) {
      // Another instance refreshed the same session first; its tokens are the current ones.
      const current = await this.store.get(row.id_hash);
      if (!current) throw ended();
      return (await this.open(current)).access_token;
    }
    return next.access_token;
  }

  /** Ends a session here and its grant at the issuer; returns the ID token for the logout hint. */
  async end(id: string | undefined): Promise<string | undefined> {
    const row = await this.live(id);
    await this.store.delete(row.id_hash);
    const tokens = await this.open(row);
    if (tokens.refresh_token) {
      await this.issuer.revoke(tokens.refresh_token).catch((e) => this.logger.warn("revoking the session's refresh token failed", { error: e instanceof Error ? e.message : String(e) }));
    }
    return tokens.id_token;
  }

  /** Ends the sessions a verified logout token names. */
  endMatching(m: { sid?: string; subject?: string }): Promise<number> {
    return this.store.deleteMatching(this.tenant, m);
  }

  sweep(): Promise<void> {
    return this.store.sweep(now(), this.policy.idleS);
  }
}
