/**
 * Links sent by e-mail: magic sign-in links, self-registration, password reset and address
 * change. No HTTP here.
 *
 * Guarantees: a link carries a random 256-bit token of which only the SHA-256 is stored, with
 * its payload barrier-encrypted; it works once (marked used by compare-and-set) and until its
 * expiry (magic links at most 10 minutes); a magic link works only in the browser that asked
 * for it (the SHA-256 of a nonce cookie set there, compared in constant time). Requests are
 * limited per address and per IP, count unknown addresses like known ones, and answer the same
 * whether or not an account has the address; mail goes out in the background so timing does
 * not tell either.
 */
import { AppError } from "../../../src/service/errors.ts";
import { equalStrings } from "../../../src/crypto/constant-time.ts";
import { mapStorageError } from "../../../src/storage/index.ts";
import type { DataProtector } from "../../../src/service/context.ts";
import type { Logger } from "../../../src/service/log.ts";
import type { EmailTokenKind, EmailTokenRow, IdpStore, UserRow } from "../store.ts";
import type { Mail, Mailer } from "./mailer.ts";
import type { SendLimit } from "./throttle.ts";
import { assertPassword, hashPassword, type Argon2Params, type PasswordRules } from "./password.ts";
import type { Argon2Runner } from "./argon2-pool.ts";

export interface EmailLinkRules {
  magicTtlS: number;
  tokenTtlS: number;
  perAddress: number;
  perIp: number;
  displayName: string;
  password: PasswordRules;
  argon2: Argon2Params;
  runner?: Argon2Runner;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const b64url = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
export const sha256Hex = async (s: string) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(s))), (x) => x.toString(16).padStart(2, "0")).join("");
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** One answer for every bad link: used, expired, unknown, or opened in another browser. */
export const badLink = () => new AppError("link_invalid", "this link is not valid: it was already used, it has expired, or it was opened in another browser", { status: 400 });
const limited = () => new AppError("too_many_requests", "too many e-mails were asked for; wait a few minutes", { status: 429, headers: { "Retry-After": "900" } });

/** A fresh random value for a link or a browser nonce. */
export const randomToken = () => b64url(crypto.getRandomValues(new Uint8Array(32)));

interface Registration {
  username: string;
  email: string;
  name: string | null;
  password_hash: string;
}

export class EmailLinks {
  constructor(
    private readonly store: IdpStore,
    private readonly protector: DataProtector,
    private readonly mailer: Mailer,
    private readonly limit: SendLimit,
    private readonly rules: EmailLinkRules,
    private readonly logger: Logger,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  private static dataContext = (tenant: string, hash: string) => `identity-idp/email_tokens/${tenant}/${hash}/data`;

  /** Counts a request against the address and the IP; 429 when either is over its limit. */
  private async take(tenant: string, email: string, ip: string | undefined): Promise<void> {
    const a = await this.limit.take(`mail:${tenant}:${email.toLowerCase()}`, this.rules.perAddress);
    const b = await this.limit.take(`mail-ip:${ip ?? "unknown"}`, this.rules.perIp);
    if (!a || !b) throw limited();
  }

  /** Sends in the background: the answer must not wait for (or reveal) the mail. */
  private send(mail: Mail): void {
    this.mailer.send(mail).catch((e) => this.logger.warn("mail not sent", { error: (e as Error).message }));
  }

  private async issue(tenant: string, kind: EmailTokenKind, ttlS: number, o: { userId?: string; browserNonce?: string; data?: unknown }): Promise<string> {
    const token = randomToken();
    const hash = await sha256Hex(token);
    const t = this.now();
    const row: EmailTokenRow = {
      token_hash: hash,
      tenant,
      kind,
      user_id: o.userId ?? null,
      browser_hash: o.browserNonce ? await sha256Hex(o.browserNonce) : null,
      data: o.data === undefined ? null : await this.protector.encrypt(enc.encode(JSON.stringify(o.data)), EmailLinks.dataContext(tenant, hash)),
      created_at: t,
      expires_at: t + ttlS,
      used_at: null,
    };
    await this.store.insertEmailToken(row);
    return token;
  }

  /** Checks a link's token (and, for magic links, the browser) and marks it used. */
  private async consume(tenant: string, kind: EmailTokenKind, token: unknown, browserNonce?: string): Promise<EmailTokenRow & { payload?: unknown }> {
    if (typeof token !== "string" || !TOKEN.test(token)) throw badLink();
    const hash = await sha256Hex(token);
    const row = await this.store.emailToken(tenant, kind, hash);
    if (!row || row.used_at !== null || row.expires_at <= this.now()) throw badLink();
    if (row.browser_hash !== null) {
      const got = browserNonce && TOKEN.test(browserNonce) ? await sha256Hex(browserNonce) : "";
      if (!equalStrings(got.padEnd(64, "0"), row.browser_hash)) throw badLink();
    }
    if (!(await this.store.useEmailToken(hash, this.now()))) throw badLink();
    const payload = row.data ? JSON.parse(dec.decode(await this.protector.decrypt(new Uint8Array(row.data), EmailLinks.dataContext(tenant, hash)))) : undefined;
    return { ...row, payload };
  }

  // magic links

  /**
   * Asks for a sign-in link for `email`, bound to the browser holding `browserNonce`. Nothing
   * tells the caller whether an account has the address.
   */
  async requestMagicLink(tenant: string, email: string, ip: string | undefined, browserNonce: string, linkBase: string): Promise<void> {
    await this.take(tenant, email, ip);
    const user = await this.store.userByVerifiedEmail(tenant, email);
    if (!user || user.disabled) return;
    const token = await this.issue(tenant, "magic", this.rules.magicTtlS, { userId: user.id, browserNonce });
    const minutes = Math.round(this.rules.magicTtlS / 60);
    this.send({
      to: email,
      subject: `Your ${this.rules.displayName} sign-in link`,
      text: `Open this link in the same browser to sign in. It works once, for ${minutes} minutes:\n\n${linkBase}/t/${tenant}/magic/open?token=${token}\n\nIf you did not ask for it, ignore this mail.\n`,
    });
  }

  /** The user a magic link signs in; `link_invalid` for a used, expired or foreign-browser link. */
  async openMagicLink(tenant: string, token: unknown, browserNonce: string | undefined): Promise<UserRow> {
    const row = await this.consume(tenant, "magic", token, browserNonce ?? "");
    const user = await this.store.userById(tenant, row.user_id!);
    if (!user || user.disabled) throw badLink();
    return user;
  }

  // self-registration

  /** Starts a sign-up: the account is created only when the link in the mail is opened. */
  async requestRegistration(tenant: string, input: { username: string; email: string; name?: string; password: string }, ip: string | undefined, linkBase: string, rules: PasswordRules = this.rules.password): Promise<void> {
    assertPassword(input.password, rules, [input.username, input.email]);
    if (await this.store.userByName(tenant, input.username)) throw new AppError("conflict", "that username is taken; choose another");
    await this.take(tenant, input.email, ip);
    if (await this.store.userByVerifiedEmail(tenant, input.email)) {
      this.send({ to: input.email, subject: `Your ${this.rules.displayName} account`, text: `Someone tried to create an account with this address, which already has one. To sign in without your password, use "Email me a sign-in link" at ${linkBase}/t/${tenant}/login.\n` });
      return;
    }
    const data: Registration = { username: input.username, email: input.email, name: input.name ?? null, password_hash: await hashPassword(input.password, this.rules.argon2, this.rules.runner) };
    const token = await this.issue(tenant, "register", this.rules.tokenTtlS, { data });
    this.send({ to: input.email, subject: `Confirm your ${this.rules.displayName} account`, text: `Open this link to confirm your address and create your account "${input.username}":\n\n${linkBase}/t/${tenant}/register/confirm?token=${token}\n\nIf you did not ask for it, ignore this mail.\n` });
  }

  /** Creates the account of a confirmed sign-up (its address verified). */
  async confirmRegistration(tenant: string, token: unknown): Promise<UserRow> {
    const row = await this.consume(tenant, "register", token);
    const r = row.payload as Registration;
    const t = this.now();
    const user = { id: crypto.randomUUID(), tenant, username: r.username, password_hash: r.password_hash, name: r.name, email: r.email, email_verified: 1, disabled: 0, password_changed_at: t, created_at: t, updated_at: t };
    try {
      await this.store.insertUser(user);
    } catch (e) {
      if (mapStorageError(e).code === "conflict") throw new AppError("conflict", "that username was taken in the meantime; sign up again with another");
      throw e;
    }
    return { ...user, seq: 0 };
  }

  // password reset

  async requestPasswordReset(tenant: string, email: string, ip: string | undefined, linkBase: string): Promise<void> {
    await this.take(tenant, email, ip);
    const user = await this.store.userByVerifiedEmail(tenant, email);
    if (!user || user.disabled) return;
    const token = await this.issue(tenant, "reset", this.rules.tokenTtlS, { userId: user.id });
    this.send({ to: email, subject: `Reset your ${this.rules.displayName} password`, text: `Open this link to choose a new password for "${user.username}":\n\n${linkBase}/t/${tenant}/password/reset?token=${token}\n\nIf you did not ask for it, ignore this mail: your password stays as it is.\n` });
  }

  /** Checks a reset link without using it (the form is shown first). */
  async peekReset(tenant: string, token: unknown): Promise<void> {
    if (typeof token !== "string" || !TOKEN.test(token)) throw badLink();
    const row = await this.store.emailToken(tenant, "reset", await sha256Hex(token));
    if (!row || row.used_at !== null || row.expires_at <= this.now()) throw badLink();
  }

  /** Uses a reset link; returns the user whose password the caller then sets. */
  async useReset(tenant: string, token: unknown): Promise<string> {
    return (await this.consume(tenant, "reset", token)).user_id!;
  }

  // address change

  async requestEmailChange(tenant: string, user: UserRow, newEmail: string, ip: string | undefined, linkBase: string): Promise<void> {
    await this.take(tenant, newEmail, ip);
    const token = await this.issue(tenant, "email_change", this.rules.tokenTtlS, { userId: user.id, data: { email: newEmail } });
    if (user.email && user.email !== newEmail) {
      // The current address hears of it, so a session taken over cannot move the account away quietly.
      this.send({ to: user.email, subject: `Your ${this.rules.displayName} address is being changed`, text: `Someone signed in as "${user.username}" asked to change the account's address to ${newEmail}. If it was not you, change your password and tell your administrator.\n` });
    }
    this.send({ to: newEmail, subject: `Confirm your new ${this.rules.displayName} address`, text: `Open this link to make this the address of "${user.username}":\n\n${linkBase}/t/${tenant}/email/confirm?token=${token}\n\nIf you did not ask for it, ignore this mail.\n` });
  }

  /** Sets the new, now verified, address; returns the user id. */
  async confirmEmailChange(tenant: string, token: unknown): Promise<string> {
    const row = await this.consume(tenant, "email_change", token);
    const email = (row.payload as { email: string }).email;
    if (!(await this.store.updateUser(tenant, row.user_id!, { email, email_verified: 1, updated_at: this.now() }))) throw badLink();
    return row.user_id!;
  }
}
