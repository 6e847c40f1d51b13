/** Kysely queries of identity-idp. Every user-data query is scoped by tenant. */
import type { Kysely } from "kysely";
import { nextSeq } from "../../src/storage/index.ts";

export interface UserRow {
  id: string;
  tenant: string;
  username: string;
  password_hash: string | null;
  name: string | null;
  email: string | null;
  email_verified: number;
  disabled: number;
  password_changed_at: number | null;
  created_at: number;
  updated_at: number;
  seq: number;
}

export interface FactorRow {
  id: string;
  tenant: string;
  user_id: string;
  kind: "totp" | "hotp";
  seed: Uint8Array;
  confirmed: number;
  last_step: number | null;
  counter: number;
  created_at: number;
}

export interface IdpSessionRow {
  id_hash: string;
  tenant: string;
  user_id: string | null;
  auth_time: number | null;
  amr: string | null;
  /** The login in progress (LoginFlow JSON), barrier ciphertext; null: none. */
  flow_sealed: Uint8Array | null;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  revoked: number;
}

export interface WebAuthnCredentialRow {
  id: string;
  tenant: string;
  user_id: string;
  name: string;
  public_key: Uint8Array;
  counter: number;
  transports: string;
  fmt: string;
  aaguid: string;
  backed_up: number;
  created_at: number;
  last_used_at: number | null;
}

export interface YubiKeyRow {
  id: string;
  tenant: string;
  user_id: string;
  public_id: string;
  name: string;
  /** Barrier ciphertext of the AES-128 key followed by the 6-byte private id. */
  secret: Uint8Array;
  session_counter: number;
  use_counter: number;
  created_at: number;
  last_used_at: number | null;
}

export type EmailTokenKind = "magic" | "register" | "reset" | "email_change";

export interface EmailTokenRow {
  token_hash: string;
  tenant: string;
  kind: EmailTokenKind;
  user_id: string | null;
  browser_hash: string | null;
  data: Uint8Array | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

export interface TenantPolicyRow {
  tenant: string;
  mfa: string;
  self_registration: number;
  /** The tenant's own minimum password length; null: the configured one. */
  password_min_length?: number | null;
  user_verification: string;
  /** 1: a pki-ca certificate whose e-mail SAN is a user's verified address signs that user in. */
  certificate_email?: number;
  /** 1: a pki-ca certificate whose UPN SAN is a user's username signs that user in. */
  certificate_upn?: number;
  updated_at: number;
}

export interface UserCertificateRow {
  id: string;
  tenant: string;
  user_id: string;
  x5t_s256: string;
  subject: string;
  name: string;
  not_after: number;
  created_at: number;
  last_used_at: number | null;
}

export interface IdpDb {
  users: UserRow;
  otp_factors: FactorRow;
  recovery_codes: { code_hash: string; tenant: string; user_id: string; used_at: number | null };
  idp_sessions: IdpSessionRow;
  consents: { tenant: string; user_id: string; client_id: string; scopes: string; granted_at: number };
  login_throttle: { key: string; failures: number; locked_until: number; updated_at: number };
  tenant_policies: TenantPolicyRow;
  webauthn_credentials: WebAuthnCredentialRow;
  yubikeys: YubiKeyRow;
  user_certificates: UserCertificateRow;
  yubico_clients: { id: number; tenant: string; key: Uint8Array; created_at: number };
  email_tokens: EmailTokenRow;
  idp_keys: { kid: string; status: string; public_jwk: string; private_jwk: Uint8Array; created_at: number; retired_at: number | null };
}

export class IdpStore {
  constructor(readonly db: Kysely<IdpDb>) {}

  // users
  async insertUser(row: Omit<UserRow, "seq">): Promise<void> {
    // seq orders pages stably; taken in the same statement so it stays monotonic per tenant.
    await this.db.transaction().execute((trx) => trx.insertInto("users").values({ ...row, seq: nextSeq(trx, "users", row.tenant) }).execute());
  }
  userById(tenant: string, id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom("users").selectAll().where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
  }
  userByName(tenant: string, username: string): Promise<UserRow | undefined> {
    return this.db.selectFrom("users").selectAll().where("tenant", "=", tenant).where("username", "=", username).executeTakeFirst();
  }
  listUsers(tenant: string, afterSeq: number, limit: number): Promise<UserRow[]> {
    return this.db.selectFrom("users").selectAll().where("tenant", "=", tenant).where("seq", ">", afterSeq).orderBy("seq").limit(limit).execute();
  }
  async updateUser(tenant: string, id: string, set: Partial<Omit<UserRow, "id" | "tenant" | "seq">>): Promise<boolean> {
    const r = await this.db.updateTable("users").set(set).where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  /** Deletes a user with everything kept for them (factors, recovery codes, consents, sessions), at once. */
  async deleteUser(tenant: string, id: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      for (const table of ["otp_factors", "recovery_codes", "consents", "idp_sessions", "webauthn_credentials", "yubikeys", "user_certificates", "email_tokens"] as const) {
        await tx.deleteFrom(table).where("tenant", "=", tenant).where("user_id", "=", id).execute();
      }
      const r = await tx.deleteFrom("users").where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
      return r.numDeletedRows > 0n;
    });
  }

  // second factors
  factors(tenant: string, userId: string): Promise<FactorRow[]> {
    return this.db.selectFrom("otp_factors").selectAll().where("tenant", "=", tenant).where("user_id", "=", userId).orderBy("created_at").execute();
  }
  async insertFactor(row: FactorRow): Promise<void> {
    await this.db.insertInto("otp_factors").values(row).execute();
  }
  async confirmFactor(tenant: string, id: string, lastStep: number | null, counter: number): Promise<void> {
    await this.db.updateTable("otp_factors").set({ confirmed: 1, last_step: lastStep, counter }).where("tenant", "=", tenant).where("id", "=", id).execute();
  }
  /** Moves a TOTP factor's last step forward; false if another request used that step first. */
  async advanceStep(tenant: string, id: string, step: number): Promise<boolean> {
    const r = await this.db
      .updateTable("otp_factors")
      .set({ last_step: step })
      .where("tenant", "=", tenant)
      .where("id", "=", id)
      .where((eb) => eb.or([eb("last_step", "is", null), eb("last_step", "<", step)]))
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  /** Moves an HOTP counter forward; false if another request moved it first. */
  async advanceCounter(tenant: string, id: string, from: number, to: number): Promise<boolean> {
    const r = await this.db.updateTable("otp_factors").set({ counter: to }).where("tenant", "=", tenant).where("id", "=", id).where("counter", "=", from).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async deleteFactor(tenant: string, userId: string, id: string): Promise<void> {
    await this.db.deleteFrom("otp_factors").where("tenant", "=", tenant).where("user_id", "=", userId).where("id", "=", id).execute();
  }
  async deleteUnconfirmed(tenant: string, userId: string): Promise<void> {
    await this.db.deleteFrom("otp_factors").where("tenant", "=", tenant).where("user_id", "=", userId).where("confirmed", "=", 0).execute();
  }
  async deleteFactors(tenant: string, userId: string): Promise<void> {
    await this.db.deleteFrom("otp_factors").where("tenant", "=", tenant).where("user_id", "=", userId).execute();
    await this.db.deleteFrom("webauthn_credentials").where("tenant", "=", tenant).where("user_id", "=", userId).execute();
    await this.db.deleteFrom("yubikeys").where("tenant", "=", tenant).where("user_id", "=", userId).execute();
    await this.db.deleteFrom("recovery_codes").where("tenant", "=", tenant).where("user_id", "=", userId).execute();
  }

  // recovery codes
  async replaceRecoveryCodes(tenant: string, userId: string, hashes: string[]): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("recovery_codes").where("tenant", "=", tenant).where("user_id", "=", userId).execute();
      await tx.insertInto("recovery_codes").values(hashes.map((code_hash) => ({ code_hash, tenant, user_id: userId, used_at: null }))).execute();
    });
  }
  /** Marks an unused code used; false when there is none (wrong or already used). */
  async useRecoveryCode(tenant: string, userId: string, hash: string, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable("recovery_codes")
      .set({ used_at: now })
      .where("code_hash", "=", hash)
      .where("tenant", "=", tenant)
      .where("user_id", "=", userId)
      .where("used_at", "is", null)
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async recoveryCodesLeft(tenant: string, userId: string): Promise<number> {
    const r = await this.db
      .selectFrom("recovery_codes")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("tenant", "=", tenant)
      .where("user_id", "=", userId)
      .where("used_at", "is", null)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  // consents
  consent(tenant: string, userId: string, clientId: string) {
    return this.db.selectFrom("consents").selectAll().where("tenant", "=", tenant).where("user_id", "=", userId).where("client_id", "=", clientId).executeTakeFirst();
  }
  async saveConsent(tenant: string, userId: string, clientId: string, scopes: string, now: number): Promise<void> {
    await this.db
      .insertInto("consents")
      .values({ tenant, user_id: userId, client_id: clientId, scopes, granted_at: now })
      .onConflict((oc) => oc.columns(["tenant", "user_id", "client_id"]).doUpdateSet({ scopes, granted_at: now }))
      .execute();
  }

  // policies
  policyRow(tenant: string): Promise<TenantPolicyRow | undefined> {
    return this.db.selectFrom("tenant_policies").selectAll().where("tenant", "=", tenant).executeTakeFirst();
  }
  async setPolicy(row: TenantPolicyRow): Promise<void> {
    const { tenant, ...set } = row;
    await this.db
      .insertInto("tenant_policies")
      .values(row)
      .onConflict((oc) => oc.column("tenant").doUpdateSet(set))
      .execute();
  }

  /** The user holding this verified address in the tenant; undefined when none or more than one do. */
  async userByVerifiedEmail(tenant: string, email: string): Promise<UserRow | undefined> {
    const rows = await this.db.selectFrom("users").selectAll().where("tenant", "=", tenant).where("email", "=", email).where("email_verified", "=", 1).limit(2).execute();
    return rows.length === 1 ? rows[0] : undefined;
  }

  // passkeys (WebAuthn credentials)
  credentials(tenant: string, userId: string): Promise<WebAuthnCredentialRow[]> {
    return this.db.selectFrom("webauthn_credentials").selectAll().where("tenant", "=", tenant).where("user_id", "=", userId).orderBy("created_at").execute();
  }
  credential(tenant: string, id: string): Promise<WebAuthnCredentialRow | undefined> {
    return this.db.selectFrom("webauthn_credentials").selectAll().where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
  }
  async insertCredential(row: WebAuthnCredentialRow): Promise<void> {
    await this.db.insertInto("webauthn_credentials").values(row).execute();
  }
  /** Moves a credential's signature counter from `from` to `to`; false if another sign-in moved it first. */
  async advanceCredentialCounter(tenant: string, id: string, from: number, to: number, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable("webauthn_credentials")
      .set({ counter: to, last_used_at: now })
      .where("tenant", "=", tenant)
      .where("id", "=", id)
      .where("counter", "=", from)
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async deleteCredential(tenant: string, userId: string, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom("webauthn_credentials").where("tenant", "=", tenant).where("user_id", "=", userId).where("id", "=", id).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  // client certificates registered for sign-in (mTLS)
  userCertificates(tenant: string, userId: string): Promise<UserCertificateRow[]> {
    return this.db.selectFrom("user_certificates").selectAll().where("tenant", "=", tenant).where("user_id", "=", userId).orderBy("created_at").execute();
  }
  userCertificateByX5t(tenant: string, x5t: string): Promise<UserCertificateRow | undefined> {
    return this.db.selectFrom("user_certificates").selectAll().where("tenant", "=", tenant).where("x5t_s256", "=", x5t).executeTakeFirst();
  }
  async insertUserCertificate(row: UserCertificateRow): Promise<void> {
    await this.db.insertInto("user_certificates").values(row).execute();
  }
  async touchUserCertificate(tenant: string, id: string, at: number): Promise<void> {
    await this.db.updateTable("user_certificates").set({ last_used_at: at }).where("tenant", "=", tenant).where("id", "=", id).execute();
  }
  async deleteUserCertificate(tenant: string, userId: string, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom("user_certificates").where("tenant", "=", tenant).where("user_id", "=", userId).where("id", "=", id).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  // YubiKeys (Yubico OTP)
  yubikeys(tenant: string, userId: string): Promise<YubiKeyRow[]> {
    return this.db.selectFrom("yubikeys").selectAll().where("tenant", "=", tenant).where("user_id", "=", userId).orderBy("created_at").execute();
  }
  yubikeyByPublicId(tenant: string, publicId: string): Promise<YubiKeyRow | undefined> {
    return this.db.selectFrom("yubikeys").selectAll().where("tenant", "=", tenant).where("public_id", "=", publicId).executeTakeFirst();
  }
  async insertYubikey(row: YubiKeyRow): Promise<void> {
    await this.db.insertInto("yubikeys").values(row).execute();
  }
  /** Moves a key's counters from the values read to newer ones; false if another OTP moved them first. */
  async advanceYubikey(tenant: string, id: string, from: { session: number; use: number }, to: { session: number; use: number }, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable("yubikeys")
      .set({ session_counter: to.session, use_counter: to.use, last_used_at: now })
      .where("tenant", "=", tenant)
      .where("id", "=", id)
      .where("session_counter", "=", from.session)
      .where("use_counter", "=", from.use)
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async deleteYubikey(tenant: string, userId: string, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom("yubikeys").where("tenant", "=", tenant).where("user_id", "=", userId).where("id", "=", id).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }
  yubicoClient(id: number) {
    return this.db.selectFrom("yubico_clients").selectAll().where("id", "=", id).executeTakeFirst();
  }
  yubicoClients(tenant: string) {
    return this.db.selectFrom("yubico_clients").select(["id", "created_at"]).where("tenant", "=", tenant).orderBy("created_at").execute();
  }
  async insertYubicoClient(row: { id: number; tenant: string; key: Uint8Array; created_at: number }): Promise<void> {
    await this.db.insertInto("yubico_clients").values(row).execute();
  }
  async deleteYubicoClient(tenant: string, id: number): Promise<boolean> {
    const r = await this.db.deleteFrom("yubico_clients").where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  // e-mail tokens (magic links, sign-up, password reset, address change)
  async insertEmailToken(row: EmailTokenRow): Promise<void> {
    await this.db.deleteFrom("email_tokens").where("expires_at", "<", row.created_at - 86_400).execute();
    await this.db.insertInto("email_tokens").values(row).execute();
  }
  emailToken(tenant: string, kind: EmailTokenKind, hash: string): Promise<EmailTokenRow | undefined> {
    return this.db.selectFrom("email_tokens").selectAll().where("tenant", "=", tenant).where("kind", "=", kind).where("token_hash", "=", hash).executeTakeFirst();
  }
  /** Marks an unused token used; false when another request used it first. */
  async useEmailToken(hash: string, now: number): Promise<boolean> {
    const r = await this.db.updateTable("email_tokens").set({ used_at: now }).where("token_hash", "=", hash).where("used_at", "is", null).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
}
