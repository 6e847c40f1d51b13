/**
 * Access tokens for a context, one per audience (RFC 8707 `resource` = the service's name),
 * cached in `tokens/<context>/<audience>.json` (0600) and reused until 30 s before they
 * expire. A client-credentials context asks the token endpoint again; a browser-login
 * context redeems its refresh token (kept in `tokens/<context>/refresh.json`). Refresh
 * tokens rotate on every use and identity-authz revokes the whole grant when one is used
 * twice, so redeeming one happens under a lock file that parallel invocations wait on.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import * as oauth from "oauth4webapi";
import { decodeJwt } from "jose";
import { tokenDir, writePrivate, type Context } from "./config.ts";
import { fileProblem, RefusedError, UsageError } from "./errors.ts";
import { refusal, send } from "./http.ts";

/** A cached token is used until this many seconds before its expiry. */
export const EXPIRY_MARGIN_S = 30;
const LOCK_STALE_MS = 60_000;
const LOCK_WAIT_MS = 90_000;

interface CachedToken {
  access_token: string;
  expires_at: number;
}

interface StoredRefresh {
  refresh_token: string;
  scope: string;
}

export function readCaFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw fileProblem(e, path);
  }
}

export function readSecretFile(path: string): string {
  let s: string;
  try {
    s = readFileSync(path, "utf8").trim();
  } catch (e) {
    throw fileProblem(e, path);
  }
  if (!s) throw new UsageError(`${path} is empty`);
  return s;
}

const safeName = (aud: string) => aud.replace(/[^A-Za-z0-9._-]/g, "_");
const nowS = () => Math.floor(Date.now() / 1000);

/** Waits for the context's lock file, runs `fn`, removes it. A lock older than a minute is stale. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, "refresh.lock");
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(lock, "wx", 0o600));
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw fileProblem(e, lock, "create");
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) rmSync(lock, { force: true });
      } catch {
        // removed meanwhile by its owner
      }
      if (Date.now() > until) throw new UsageError(`${lock} is held by another cryptoutil process`);
      await Bun.sleep(50 + Math.random() * 100);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** The token endpoint's answers, for checking credentials at login. */
export interface TokenAnswer {
  access_token: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
}

export class TokenSource {
  private as?: oauth.AuthorizationServer;
  private readonly ca: string;

  constructor(
    readonly contextName: string,
    readonly context: Context,
  ) {
    this.ca = readCaFile(context.ca_file);
  }

  private get dir(): string {
    return tokenDir(this.contextName);
  }

  /** Options for oauth4webapi: its requests go through send(), so a dead issuer is one clear line. */
  get fetchOptions() {
    return { [oauth.customFetch]: (url: string, init: RequestInit) => send(url, init, this.ca, "the token issuer") };
  }

  /** The issuer's metadata (OpenID discovery), fetched once per invocation. */
  async metadata(): Promise<oauth.AuthorizationServer> {
    if (this.as) return this.as;
    const iss = new URL(this.context.issuer);
    const res = await oauth.discoveryRequest(iss, { algorithm: "oidc", ...this.fetchOptions });
    if (!res.ok) throw await refusal(res);
    this.as = await oauth.processDiscoveryResponse(iss, res);
    return this.as;
  }

  /** An access token for `audience`: the cached one unless `fresh`, or a new one. */
  async token(audience: string, opts: { fresh?: boolean } = {}): Promise<string> {
    const file = join(this.dir, `${safeName(audience)}.json`);
    if (!opts.fresh) {
      const cached = this.readCached(file);
      if (cached) return cached;
    }
    const t = this.context.auth.kind === "client_credentials" ? await this.clientCredentials(audience) : await this.refresh(audience);
    this.cache(audience, t);
    return t.access_token;
  }

  private readCached(file: string): string | undefined {
    try {
      const c = JSON.parse(readFileSync(file, "utf8")) as CachedToken;
      if (typeof c.access_token === "string" && typeof c.expires_at === "number" && c.expires_at - EXPIRY_MARGIN_S > nowS()) return c.access_token;
    } catch {
      // absent or unreadable: fetch a new one
    }
    return undefined;
  }

  /** Stores a token under its audience (the `aud` it carries when `audience` is not given). */
  cache(audience: string | undefined, t: TokenAnswer): void {
    let aud = audience;
    let exp = t.expires_in !== undefined ? nowS() + t.expires_in : undefined;
    try {
      const claims = decodeJwt(t.access_token);
      aud ??= Array.isArray(claims.aud) ? claims.aud[0] : claims.aud;
      if (typeof claims.exp === "number") exp = claims.exp;
    } catch {
      // an opaque token: expires_in is all there is
    }
    if (!aud || exp === undefined) return;
    writePrivate(join(this.dir, `${safeName(aud)}.json`), JSON.stringify({ access_token: t.access_token, expires_at: exp } satisfies CachedToken) + "\n");
  }

  /** client_credentials with `client_secret_basic`; `audience` undefined = the client's default. */
  async clientCredentials(audience?: string): Promise<TokenAnswer> {
    const a = this.context.auth;
    if (a.kind !== "client_credentials") throw new Error("not a client-credentials context");
    const secret = readSecretFile(a.client_secret_file);
    const as = await this.metadata();
    const client = { client_id: a.client_id };
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), audience ? { resource: audience } : {}, this.fetchOptions);
    if (!res.ok) throw await refusal(res, res.status === 401 ? `check the secret in ${a.client_secret_file}` : undefined);
    return (await oauth.processClientCredentialsResponse(as, client, res)) as TokenAnswer;
  }

  /** Redeems the browser login's refresh token for `audience`, storing the rotated one. */
  private async refresh(audience: string): Promise<TokenAnswer> {
    const a = this.context.auth;
    if (a.kind !== "browser") throw new Error("not a browser-login context");
    return withLock(this.dir, async () => {
      // Another process may have fetched this token while we waited for the lock.
      const cachedNow = this.readCached(join(this.dir, `${safeName(audience)}.json`));
      if (cachedNow) return { access_token: cachedNow };
      const stored = this.readRefresh();
      const as = await this.metadata();
      const client = { client_id: a.client_id, token_endpoint_auth_method: "none" };
      const res = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), stored.refresh_token, { additionalParameters: { resource: audience }, ...this.fetchOptions });
      if (!res.ok) {
        const r = await refusal(res);
        if (r.code === "invalid_grant") rmSync(join(this.dir, "refresh.json"), { force: true });
        throw new RefusedError(r.code, r.message, r.status, r.code === "invalid_grant" ? "run cryptoutil login --browser again" : undefined);
      }
      const t = (await oauth.processRefreshTokenResponse(as, client, res)) as TokenAnswer;
      if (t.refresh_token) this.storeRefresh({ refresh_token: t.refresh_token, scope: t.scope ?? stored.scope });
      return t;
    });
  }

  private readRefresh(): StoredRefresh {
    try {
      return JSON.parse(readFileSync(join(this.dir, "refresh.json"), "utf8")) as StoredRefresh;
    } catch {
      throw new UsageError(`context '${this.contextName}' has no browser login: run cryptoutil login --browser`);
    }
  }

  storeRefresh(r: StoredRefresh): void {
    writePrivate(join(this.dir, "refresh.json"), JSON.stringify(r) + "\n");
  }

  /** The stored refresh token, if any (for logout's revocation). */
  storedRefresh(): StoredRefresh | undefined {
    try {
      return this.readRefresh();
    } catch {
      return undefined;
    }
  }
}
