/**
 * Users of a tenant and password logins. No HTTP here.
 *
 * Guarantees: a login costs one Argon2id verification whether or not the user exists or is
 * disabled (a dummy hash stands in), and fails with the same answer in every case; failures
 * count against the username and the client IP (see throttle.ts) and a locked key is refused
 * before any hash is computed. Passwords follow NIST 800-63B (length + blocklist only).
 */
import { AppError, notFound } from "../../../src/service/errors.ts";
import { mapStorageError } from "../../../src/storage/index.ts";
import type { CreateUserInput, UpdateUserInput, UserView } from "../../../schemas/identity-idp.ts";
import type { IdpStore, UserRow } from "../store.ts";
import { assertPassword, hashPassword, needsRehash, verifyDummy, verifyPassword, type Argon2Params, type PasswordRules } from "./password.ts";
import { LoginThrottle } from "./throttle.ts";
import type { Argon2Runner } from "./argon2-pool.ts";
import type { SecondFactors } from "./factors.ts";

export interface TenantPolicy {
  mfa: "optional" | "required";
  /** Whether people may create their own account (with a verified e-mail address). */
  self_registration: boolean;
  /** WebAuthn user verification (PIN, biometrics) asked of passkeys. */
  user_verification: "required" | "preferred" | "discouraged";
  /** The shortest password accepted in this tenant. */
  password_min_length: number;
  /**
   * Whether a client certificate of pki-ca's CAs signs in the user whose verified e-mail address
   * is its e-mail SAN, without being registered (default false: registered certificates only).
   */
  certificate_email: boolean;
  /**
   * Whether a client certificate of pki-ca's CAs signs in the user whose username is its UPN SAN
   * (Microsoft otherName, smart-card logon), compared case-insensitively (default false).
   */
  certificate_upn: boolean;
}

export type LoginResult = { ok: true; user: UserRow } | { ok: false; lockedForS: number };

export const lockedError = (seconds: number) =>
  new AppError("login_locked", `too many failed attempts; try again in ${seconds} s`, { status: 429, headers: { "Retry-After": String(seconds) } });

export class UserService {
  constructor(
    private readonly store: IdpStore,
    readonly factors: SecondFactors,
    private readonly throttle: LoginThrottle,
    private readonly cfg: { rules: PasswordRules; argon2: Argon2Params; mfaDefault: "optional" | "required"; runner?: Argon2Runner },
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async view(row: UserRow): Promise<UserView> {
    return {
      id: row.id,
      username: row.username,
      name: row.name,
      email: row.email,
      email_verified: !!row.email_verified,
      disabled: !!row.disabled,
      has_password: !!row.password_hash,
      mfa: { factors: await this.factors.list(row.tenant, row.id), recovery_codes_left: await this.factors.recoveryCodesLeft(row.tenant, row.id) },
      created_at: row.created_at,
      updated_at: row.updated_at,
      locked_until: await this.lockedUntil(row.tenant, row.username),
    };
  }

  /** Until when failed sign-ins lock this username (null: not locked). */
  async lockedUntil(tenant: string, username: string): Promise<number | null> {
    const wait = await this.throttle.lockedFor([LoginThrottle.userKey(tenant, username)]);
    return wait > 0 ? this.now() + wait : null;
  }

  /** Lifts the lock on a username (failed sign-ins forgotten); the client IP's own count stays. */
  async unlock(tenant: string, id: string): Promise<UserView> {
    const row = await this.row(tenant, id);
    await this.throttle.reset(LoginThrottle.userKey(tenant, row.username));
    return this.view(row);
  }

  /** The password rules of a tenant: its own minimum length, else the configured one. */
  async passwordRules(tenant: string): Promise<PasswordRules> {
    return { ...this.cfg.rules, minLength: (await this.policy(tenant)).password_min_length };
  }

  async create(tenant: string, input: CreateUserInput): Promise<UserView> {
    if (await this.store.userByName(tenant, input.username)) throw new AppError("conflict", "a user with that username exists");
    if (input.password !== undefined) assertPassword(input.password, await this.passwordRules(tenant), [input.username, input.email ?? ""]);
    const t = this.now();
    const row = {
      id: crypto.randomUUID(),
      tenant,
      username: input.username,
      password_hash: input.password !== undefined ? await hashPassword(input.password, this.cfg.argon2, this.cfg.runner) : null,
      name: input.name ?? null,
      email: input.email ?? null,
      email_verified: input.email_verified ? 1 : 0,
      disabled: 0,
      password_changed_at: input.password !== undefined ? t : null,
      created_at: t,
      updated_at: t,
    };
    try {
      await this.store.insertUser(row);
    } catch (e) {
      if (mapStorageError(e).code === "conflict") throw new AppError("conflict", "a user with that username exists");
      throw e;
    }
    return this.view({ ...row, seq: 0 });
  }

  async row(tenant: string, id: string): Promise<UserRow> {
    const row = await this.store.userById(tenant, id);
    if (!row) throw notFound("user");
    return row;
  }

  async get(tenant: string, id: string): Promise<UserView> {
    return this.view(await this.row(tenant, id));
  }

  async list(tenant: string, q: { limit?: number; page_token?: string }): Promise<{ items: UserView[]; next_page_token: string | null }> {
    const limit = q.limit ?? 20;
    const rows = await this.store.listUsers(tenant, q.page_token ? Number(q.page_token) : 0, limit + 1);
    const page = rows.slice(0, limit);
    return { items: await Promise.all(page.map((r) => this.view(r))), next_page_token: rows.length > limit ? String(page[page.length - 1]!.seq) : null };
  }

  async update(tenant: string, id: string, patch: UpdateUserInput): Promise<UserView> {
    const set: Partial<UserRow> = { updated_at: this.now() };
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.email !== undefined) set.email = patch.email;
    if (patch.email_verified !== undefined) set.email_verified = patch.email_verified ? 1 : 0;
    if (patch.disabled !== undefined) set.disabled = patch.disabled ? 1 : 0;
    if (!(await this.store.updateUser(tenant, id, set))) throw notFound("user");
    return this.get(tenant, id);
  }

  /** Deletes a user, their factors, recovery codes, consents and sessions. */
  async delete(tenant: string, id: string): Promise<void> {
    if (!(await this.store.deleteUser(tenant, id))) throw notFound("user");
  }

  /** Sets a new password (admin reset or self-service change). */
  async setPassword(tenant: string, id: string, password: string): Promise<void> {
    const row = await this.row(tenant, id);
    assertPassword(password, await this.passwordRules(tenant), [row.username, row.email ?? ""]);
    const t = this.now();
    await this.store.updateUser(tenant, id, { password_hash: await hashPassword(password, this.cfg.argon2, this.cfg.runner), password_changed_at: t, updated_at: t });
  }

  /** Self-service change: the current password must verify first. */
  async changePassword(tenant: string, id: string, current: string, next: string, ip: string | undefined): Promise<boolean> {
    const row = await this.row(tenant, id);
    const r = await this.login(tenant, row.username, current, ip);
    if (!r.ok) return false;
    await this.setPassword(tenant, id, next);
    return true;
  }

  /** The tenant's sign-in policy; a tenant without its own gets the configured defaults. */
  async policy(tenant: string): Promise<TenantPolicy> {
    const row = await this.store.policyRow(tenant);
    return {
      mfa: (row?.mfa as TenantPolicy["mfa"] | undefined) ?? this.cfg.mfaDefault,
      self_registration: !!row?.self_registration,
      user_verification: (row?.user_verification as TenantPolicy["user_verification"] | undefined) ?? "preferred",
      password_min_length: row?.password_min_length ?? this.cfg.rules.minLength,
      certificate_email: !!row?.certificate_email,
      certificate_upn: !!row?.certificate_upn,
    };
  }

  async mfaPolicy(tenant: string): Promise<"optional" | "required"> {
    return (await this.policy(tenant)).mfa;
  }

  /** Changes the given fields of the tenant's policy; the others keep their value. */
  async setPolicy(tenant: string, patch: Partial<TenantPolicy>): Promise<TenantPolicy> {
    const next = { ...(await this.policy(tenant)), ...patch };
    const row = await this.store.policyRow(tenant);
    // A minimum equal to the configured one is not stored: the tenant then follows the configuration.
    const ownMin = patch.password_min_length !== undefined ? (patch.password_min_length === this.cfg.rules.minLength ? null : patch.password_min_length) : (row?.password_min_length ?? null);
    await this.store.setPolicy({ tenant, mfa: next.mfa, self_registration: next.self_registration ? 1 : 0, user_verification: next.user_verification, password_min_length: ownMin, certificate_email: next.certificate_email ? 1 : 0, certificate_upn: next.certificate_upn ? 1 : 0, updated_at: this.now() });
    return next;
  }

  /** Throws `login_locked` (429) while the username or the IP is locked. */
  async assertNotLocked(tenant: string, username: string, ip: string | undefined): Promise<void> {
    const wait = await this.throttle.lockedFor([LoginThrottle.userKey(tenant, username), LoginThrottle.ipKey(ip)]);
    if (wait > 0) throw lockedError(wait);
  }

  /** Records a failed second factor against the user and the IP; returns the lock now in force. */
  async recordFailure(tenant: string, username: string, ip: string | undefined): Promise<number> {
    const a = await this.throttle.fail(LoginThrottle.userKey(tenant, username));
    const b = await this.throttle.fail(LoginThrottle.ipKey(ip));
    return Math.max(a, b);
  }

  async recordSuccess(tenant: string, username: string): Promise<void> {
    await this.throttle.reset(LoginThrottle.userKey(tenant, username));
  }

  /** Checks a username and password. Same cost and same answer for unknown, disabled and wrong. */
  async login(tenant: string, usernameRaw: string, password: string, ip: string | undefined): Promise<LoginResult> {
    const username = usernameRaw.trim().toLowerCase();
    await this.assertNotLocked(tenant, username, ip);
    const user = username.length <= 128 ? await this.store.userByName(tenant, username) : undefined;
    const ok = user?.password_hash ? await verifyPassword(password, user.password_hash, this.cfg.runner) : await verifyDummy(password, this.cfg.argon2, this.cfg.runner);
    if (!ok || !user || user.disabled) return { ok: false, lockedForS: await this.recordFailure(tenant, username, ip) };
    await this.recordSuccess(tenant, username);
    if (needsRehash(user.password_hash!, this.cfg.argon2)) {
      await this.store.updateUser(tenant, user.id, { password_hash: await hashPassword(password, this.cfg.argon2, this.cfg.runner) });
    }
    return { ok: true, user };
  }
}
