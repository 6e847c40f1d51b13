/** Kysely queries of identity-authz. Every query is scoped by tenant. */
import { sql, type Kysely } from "kysely";

export interface TenantRow { id: string; display_name: string; created_at: string }
export interface ClientRow { tenant: string; client_id: string; doc: string; secret_hash: string | null; created_at: string; updated_at: string }
export interface SigningKeyRow {
  kid: string; tenant: string; alg: string; status: string; public_jwk: string; private_jwk: Uint8Array;
  created_at: number; retired_at: number | null; publish_until: number | null;
}
export interface AuthRequestRow { id: string; tenant: string; kind: string; client_id: string; params: Uint8Array; created_at: number; expires_at: number; used: number }
export interface CodeRow { hash: string; tenant: string; client_id: string; data: Uint8Array; expires_at: number; used: number; grant_id: string | null }
export interface GrantRow {
  id: string; tenant: string; client_id: string; subject: string; scope: string; data: Uint8Array;
  dpop_jkt: string | null; created_at: number; expires_at: number; revoked: number;
}
export interface RefreshRow { hash: string; tenant: string; grant_id: string; client_id: string; created_at: number; expires_at: number; used: number }

export interface DeviceCodeRow {
  hash: string; tenant: string; client_id: string; user_code: string; params: Uint8Array; status: string;
  login: Uint8Array | null; confirm_hash: string | null; poll_interval: number; last_poll: number; grant_id: string | null;
  created_at: number; expires_at: number;
}

export interface RegistrationSettingsRow { tenant: string; enabled: number; doc: string; initial_token_hash: string | null; updated_at: string }

/** A client an idp session signed in to (back-channel logout). */
export interface SessionClientRow { tenant: string; sid: string; client_id: string; subject: string; created_at: number; expires_at: number }

export interface ScopeRow { tenant: string; name: string; description: string; claims: string }

export interface AuthzDb {
  tenant_scopes: ScopeRow;
  tenants: TenantRow;
  clients: ClientRow;
  signing_keys: SigningKeyRow;
  auth_requests: AuthRequestRow;
  codes: CodeRow;
  grants: GrantRow;
  refresh_tokens: RefreshRow;
  access_tokens: { jti: string; tenant: string; grant_id: string; expires_at: number };
  revoked_tokens: { jti: string; tenant: string; expires_at: number };
  used_jtis: { tenant: string; kind: string; jti: string; expires_at: number };
  opaque_tokens: { hash: string; tenant: string; claims: string; expires_at: number };
  device_codes: DeviceCodeRow;
  registration_settings: RegistrationSettingsRow;
  registration_tokens: { tenant: string; client_id: string; hash: string };
  tenant_secrets: { tenant: string; pairwise_salt: Uint8Array; created_at: number };
  device_attempts: { tenant: string; source: string; window_start: number; failures: number };
  session_clients: SessionClientRow;
}

const now = () => Math.floor(Date.now() / 1000);
const bytes = (b: unknown) => (b instanceof Uint8Array ? b : new Uint8Array(b as ArrayBuffer));
const deviceRow = (r: DeviceCodeRow): DeviceCodeRow => ({ ...r, params: bytes(r.params), login: r.login === null ? null : bytes(r.login), poll_interval: Number(r.poll_interval), last_poll: Number(r.last_poll), expires_at: Number(r.expires_at), created_at: Number(r.created_at) });

/** The tables whose rows belong to one tenant (column `tenant`). */
const TENANT_TABLES = ["clients", "signing_keys", "auth_requests", "codes", "grants", "refresh_tokens", "access_tokens", "revoked_tokens", "used_jtis", "tenant_scopes", "opaque_tokens", "device_codes", "device_attempts", "registration_settings", "registration_tokens", "tenant_secrets", "session_clients"] as const;

export class AuthzStore {
  constructor(readonly db: Kysely<AuthzDb>) {}

  // tenants
  getTenant(id: string) {
    return this.db.selectFrom("tenants").selectAll().where("id", "=", id).executeTakeFirst();
  }
  listTenants() {
    return this.db.selectFrom("tenants").selectAll().orderBy("id").execute();
  }
  async insertTenant(row: TenantRow): Promise<boolean> {
    const r = await this.db.insertInto("tenants").values(row).onConflict((oc) => oc.column("id").doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Deletes a tenant and every row it owns (clients, keys, grants, tokens, scopes), at once. */
  async deleteTenant(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      for (const table of TENANT_TABLES) await tx.deleteFrom(table).where("tenant", "=", id).execute();
      const r = await tx.deleteFrom("tenants").where("id", "=", id).executeTakeFirst();
      return r.numDeletedRows > 0n;
    });
  }

  // clients
  getClient(tenant: string, clientId: string) {
    return this.db.selectFrom("clients").selectAll().where("tenant", "=", tenant).where("client_id", "=", clientId).executeTakeFirst();
  }
  listClients(tenant: string) {
    return this.db.selectFrom("clients").selectAll().where("tenant", "=", tenant).orderBy("client_id").execute();
  }
  async insertClient(row: ClientRow): Promise<boolean> {
    const r = await this.db.insertInto("clients").values(row).onConflict((oc) => oc.columns(["tenant", "client_id"]).doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }
  async updateClient(tenant: string, clientId: string, set: Partial<Pick<ClientRow, "doc" | "secret_hash" | "updated_at">>): Promise<boolean> {
    const r = await this.db.updateTable("clients").set(set).where("tenant", "=", tenant).where("client_id", "=", clientId).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async deleteClient(tenant: string, clientId: string): Promise<boolean> {
    const r = await this.db.deleteFrom("clients").where("tenant", "=", tenant).where("client_id", "=", clientId).executeTakeFirst();
    // A later client of the same id is not managed by the old registration access token.
    await this.db.deleteFrom("registration_tokens").where("tenant", "=", tenant).where("client_id", "=", clientId).execute();
    return r.numDeletedRows > 0n;
  }

  // pairwise subjects
  async pairwiseSalt(tenant: string): Promise<Uint8Array | undefined> {
    const r = await this.db.selectFrom("tenant_secrets").select("pairwise_salt").where("tenant", "=", tenant).executeTakeFirst();
    return r ? bytes(r.pairwise_salt) : undefined;
  }
  /** Stores the tenant's salt unless another instance stored one first (then that one is read back). */
  async insertPairwiseSalt(tenant: string, sealed: Uint8Array): Promise<void> {
    await this.db.insertInto("tenant_secrets").values({ tenant, pairwise_salt: sealed, created_at: now() }).onConflict((oc) => oc.column("tenant").doNothing()).execute();
  }
  /** One grant of a client for a (client-facing) subject: where a pairwise subject's local one is found. */
  async grantBySubject(tenant: string, subject: string, clientId: string): Promise<GrantRow | undefined> {
    const r = await this.db.selectFrom("grants").selectAll().where("tenant", "=", tenant).where("subject", "=", subject).where("client_id", "=", clientId).executeTakeFirst();
    return r ? { ...r, data: bytes(r.data) } : undefined;
  }

  // dynamic client registration (RFC 7591/7592)
  getRegistrationSettings(tenant: string) {
    return this.db.selectFrom("registration_settings").selectAll().where("tenant", "=", tenant).executeTakeFirst();
  }
  async putRegistrationSettings(row: RegistrationSettingsRow, keepToken: boolean): Promise<void> {
    await this.db
      .insertInto("registration_settings")
      .values(row)
      .onConflict((oc) =>
        oc.column("tenant").doUpdateSet(keepToken ? { enabled: row.enabled, doc: row.doc, updated_at: row.updated_at } : { enabled: row.enabled, doc: row.doc, initial_token_hash: row.initial_token_hash, updated_at: row.updated_at }),
      )
      .execute();
  }
  async setRegistrationToken(tenant: string, clientId: string, hash: string): Promise<void> {
    await this.db
      .insertInto("registration_tokens")
      .values({ tenant, client_id: clientId, hash })
      .onConflict((oc) => oc.columns(["tenant", "client_id"]).doUpdateSet({ hash }))
      .execute();
  }
  async registrationTokenHash(tenant: string, clientId: string): Promise<string | undefined> {
    return (await this.db.selectFrom("registration_tokens").select("hash").where("tenant", "=", tenant).where("client_id", "=", clientId).executeTakeFirst())?.hash;
  }

  // scope definitions
  listScopes(tenant: string) {
    return this.db.selectFrom("tenant_scopes").selectAll().where("tenant", "=", tenant).orderBy("name").execute();
  }
  async putScope(row: ScopeRow): Promise<void> {
    await this.db
      .insertInto("tenant_scopes")
      .values(row)
      .onConflict((oc) => oc.columns(["tenant", "name"]).doUpdateSet({ description: row.description, claims: row.claims }))
      .execute();
  }
  async deleteScope(tenant: string, name: string): Promise<boolean> {
    const r = await this.db.deleteFrom("tenant_scopes").where("tenant", "=", tenant).where("name", "=", name).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  // signing keys
  async keysOf(tenant: string): Promise<SigningKeyRow[]> {
    const rows = await this.db.selectFrom("signing_keys").selectAll().where("tenant", "=", tenant).orderBy("created_at").execute();
    return rows.map((r) => ({ ...r, private_jwk: bytes(r.private_jwk) }));
  }
  async insertCurrentKey(row: SigningKeyRow): Promise<boolean> {
    try {
      await this.db.insertInto("signing_keys").values(row).execute();
      return true;
    } catch {
      return false; // another instance made the current key of this algorithm first
    }
  }
  async retireKey(kid: string, publishUntil: number): Promise<void> {
    await this.db.updateTable("signing_keys").set({ status: "retired", retired_at: now(), publish_until: publishUntil }).where("kid", "=", kid).where("status", "=", "current").execute();
  }
  async pruneKeys(tenant: string): Promise<void> {
    await this.db.deleteFrom("signing_keys").where("tenant", "=", tenant).where("status", "=", "retired").where("publish_until", "<", now()).execute();
  }
  async tenantsWithKeys(): Promise<string[]> {
    return (await this.db.selectFrom("signing_keys").select("tenant").distinct().execute()).map((r) => r.tenant);
  }

  // authorization requests (PAR and pending logins)
  async insertAuthRequest(row: Omit<AuthRequestRow, "used">): Promise<void> {
    await this.db.insertInto("auth_requests").values({ ...row, used: 0 }).execute();
  }
  /** Takes a request once: returns it only to the first caller, and only before it expires. */
  async takeAuthRequest(tenant: string, id: string, kind: string): Promise<AuthRequestRow | undefined> {
    const r = await this.db
      .updateTable("auth_requests")
      .set({ used: 1 })
      .where("id", "=", id).where("tenant", "=", tenant).where("kind", "=", kind).where("used", "=", 0).where("expires_at", ">=", now())
      .returningAll()
      .executeTakeFirst();
    return r ? { ...r, params: bytes(r.params) } : undefined;
  }

  // codes
  async insertCode(row: Omit<CodeRow, "used" | "grant_id">): Promise<void> {
    await this.db.insertInto("codes").values({ ...row, used: 0, grant_id: null }).execute();
  }
  async getCode(tenant: string, hash: string): Promise<CodeRow | undefined> {
    const r = await this.db.selectFrom("codes").selectAll().where("tenant", "=", tenant).where("hash", "=", hash).executeTakeFirst();
    return r ? { ...r, data: bytes(r.data) } : undefined;
  }
  /** Marks a code used; false if it already was (a replay). */
  async useCode(hash: string, grantId: string): Promise<boolean> {
    const r = await this.db.updateTable("codes").set({ used: 1, grant_id: grantId }).where("hash", "=", hash).where("used", "=", 0).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  // grants, refresh tokens, access tokens
  async insertGrant(row: GrantRow): Promise<void> {
    await this.db.insertInto("grants").values(row).execute();
  }
  async getGrant(tenant: string, id: string): Promise<GrantRow | undefined> {
    const r = await this.db.selectFrom("grants").selectAll().where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
    return r ? { ...r, data: bytes(r.data) } : undefined;
  }
  /** The live grants of a user, newest first. */
  listGrantsOf(tenant: string, subject: string) {
    return this.db
      .selectFrom("grants")
      .select(["id", "client_id", "scope", "created_at", "expires_at"])
      .where("tenant", "=", tenant)
      .where("subject", "=", subject)
      .where("revoked", "=", 0)
      .where("expires_at", ">", now())
      .orderBy("created_at", "desc")
      .execute();
  }
  /** Revokes one grant of a user; false when it is not theirs or not live. */
  async revokeGrantOf(tenant: string, subject: string, id: string): Promise<boolean> {
    const r = await this.db.updateTable("grants").set({ revoked: 1 }).where("tenant", "=", tenant).where("subject", "=", subject).where("id", "=", id).where("revoked", "=", 0).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async revokeGrant(tenant: string, id: string): Promise<void> {
    await this.db.updateTable("grants").set({ revoked: 1 }).where("tenant", "=", tenant).where("id", "=", id).execute();
  }
  async revokeGrantsOf(tenant: string, subject: string, clientId: string): Promise<void> {
    await this.db.updateTable("grants").set({ revoked: 1 }).where("tenant", "=", tenant).where("subject", "=", subject).where("client_id", "=", clientId).execute();
  }
  async insertRefresh(row: Omit<RefreshRow, "used">): Promise<void> {
    await this.db.insertInto("refresh_tokens").values({ ...row, used: 0 }).execute();
  }
  getRefresh(tenant: string, hash: string) {
    return this.db.selectFrom("refresh_tokens").selectAll().where("tenant", "=", tenant).where("hash", "=", hash).executeTakeFirst();
  }
  async useRefresh(hash: string): Promise<boolean> {
    const r = await this.db.updateTable("refresh_tokens").set({ used: 1 }).where("hash", "=", hash).where("used", "=", 0).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async insertAccessToken(row: { jti: string; tenant: string; grant_id: string; expires_at: number }): Promise<void> {
    await this.db.insertInto("access_tokens").values(row).execute();
  }
  getAccessToken(tenant: string, jti: string) {
    return this.db.selectFrom("access_tokens").selectAll().where("tenant", "=", tenant).where("jti", "=", jti).executeTakeFirst();
  }
  async revokeJti(tenant: string, jti: string, expiresAt: number): Promise<void> {
    await this.db.insertInto("revoked_tokens").values({ jti, tenant, expires_at: expiresAt }).onConflict((oc) => oc.column("jti").doNothing()).execute();
  }
  async isRevokedJti(tenant: string, jti: string): Promise<boolean> {
    return !!(await this.db.selectFrom("revoked_tokens").select("jti").where("tenant", "=", tenant).where("jti", "=", jti).executeTakeFirst());
  }

  // opaque access tokens
  async insertOpaqueToken(row: { hash: string; tenant: string; claims: string; expires_at: number }): Promise<void> {
    await this.db.insertInto("opaque_tokens").values(row).execute();
  }
  getOpaqueToken(tenant: string, hash: string) {
    return this.db.selectFrom("opaque_tokens").selectAll().where("tenant", "=", tenant).where("hash", "=", hash).where("expires_at", ">=", now()).executeTakeFirst();
  }

  // device authorization (RFC 8628)
  /** Inserts a device request; false if its user_code is taken in this tenant (draw another). */
  async insertDeviceCode(row: DeviceCodeRow): Promise<boolean> {
    const r = await this.db.insertInto("device_codes").values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }
  async getDeviceCode(tenant: string, hash: string): Promise<DeviceCodeRow | undefined> {
    const r = await this.db.selectFrom("device_codes").selectAll().where("tenant", "=", tenant).where("hash", "=", hash).executeTakeFirst();
    return r ? deviceRow(r) : undefined;
  }
  /** The live, still pending request a user_code names. */
  async pendingDeviceByUserCode(tenant: string, userCode: string): Promise<DeviceCodeRow | undefined> {
    const r = await this.db
      .selectFrom("device_codes").selectAll()
      .where("tenant", "=", tenant).where("user_code", "=", userCode).where("status", "=", "pending").where("expires_at", ">=", now())
      .executeTakeFirst();
    return r ? deviceRow(r) : undefined;
  }
  /** Records the sign-in and the approval token's hash; only while pending. */
  async signInDevice(tenant: string, hash: string, login: Uint8Array, confirmHash: string): Promise<boolean> {
    const r = await this.db
      .updateTable("device_codes").set({ login, confirm_hash: confirmHash })
      .where("tenant", "=", tenant).where("hash", "=", hash).where("status", "=", "pending").where("expires_at", ">=", now())
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  /** Approves or denies once, by the approval token: the first decision wins, on any instance. */
  async decideDevice(tenant: string, confirmHash: string, status: "approved" | "denied"): Promise<DeviceCodeRow | undefined> {
    const r = await this.db
      .updateTable("device_codes").set({ status })
      .where("tenant", "=", tenant).where("confirm_hash", "=", confirmHash).where("status", "=", "pending").where("expires_at", ">=", now())
      .returningAll()
      .executeTakeFirst();
    return r ? deviceRow(r) : undefined;
  }
  /**
   * A poll (RFC 8628 §3.5): recorded only if the last one was at least the interval ago; a poll
   * too soon is refused (false) and lengthens the interval by 5 s.
   */
  async pollDevice(hash: string, t: number): Promise<boolean> {
    const r = await this.db
      .updateTable("device_codes").set({ last_poll: t })
      .where("hash", "=", hash).where(sql<boolean>`last_poll + poll_interval <= ${t}`)
      .executeTakeFirst();
    if (r.numUpdatedRows > 0n) return true;
    await this.db.updateTable("device_codes").set({ last_poll: t, poll_interval: sql`poll_interval + 5` }).where("hash", "=", hash).where("poll_interval", "<", 60).execute();
    return false;
  }
  /** Turns an approved request into a grant, once. */
  async issueDevice(hash: string, grantId: string): Promise<boolean> {
    const r = await this.db.updateTable("device_codes").set({ status: "issued", grant_id: grantId }).where("hash", "=", hash).where("status", "=", "approved").executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  /**
   * Counts a failed user_code entry of `source` (fixed windows of `windowS`); returns the
   * failures in the current window, this one included.
   */
  async deviceFailure(tenant: string, source: string, windowS: number): Promise<number> {
    const t = now();
    const r = await this.db
      .insertInto("device_attempts").values({ tenant, source, window_start: t, failures: 1 })
      .onConflict((oc) =>
        oc.columns(["tenant", "source"]).doUpdateSet({
          failures: sql`CASE WHEN device_attempts.window_start <= ${t - windowS} THEN 1 ELSE device_attempts.failures + 1 END`,
          window_start: sql`CASE WHEN device_attempts.window_start <= ${t - windowS} THEN ${t} ELSE device_attempts.window_start END`,
        }),
      )
      .returning("failures")
      .executeTakeFirst();
    return Number(r?.failures ?? 1);
  }
  async deviceFailures(tenant: string, source: string, windowS: number): Promise<number> {
    const r = await this.db.selectFrom("device_attempts").select("failures").where("tenant", "=", tenant).where("source", "=", source).where("window_start", ">", now() - windowS).executeTakeFirst();
    return Number(r?.failures ?? 0);
  }

  /** Records a single-use identifier; false if it was seen before (a replay). */
  async useJti(tenant: string, kind: string, jti: string, expiresAt: number): Promise<boolean> {
    const r = await this.db.insertInto("used_jtis").values({ tenant, kind, jti, expires_at: expiresAt }).onConflict((oc) => oc.columns(["tenant", "kind", "jti"]).doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  // back-channel logout: the clients each session signed in to
  async joinSession(row: SessionClientRow): Promise<void> {
    await this.db
      .insertInto("session_clients")
      .values(row)
      .onConflict((oc) => oc.columns(["tenant", "sid", "client_id"]).doUpdateSet({ subject: row.subject, expires_at: row.expires_at }))
      .execute();
  }
  /**
   * Takes (reads and deletes) the clients of the ended sessions: one session by `sid`, or every
   * session of `subject`. Two instances taking the same rows each delete what they read; a row
   * read by both is notified twice, which the receiver's jti rule tolerates (each token is new).
   */
  async takeSessionClients(tenant: string, by: { sid: string } | { subject: string }): Promise<SessionClientRow[]> {
    return this.db.transaction().execute(async (tx) => {
      const rows = "sid" in by
        ? await tx.selectFrom("session_clients").selectAll().where("tenant", "=", tenant).where("sid", "=", by.sid).execute()
        : await tx.selectFrom("session_clients").selectAll().where("tenant", "=", tenant).where("subject", "=", by.subject).execute();
      if (rows.length === 0) return rows;
      const del = tx.deleteFrom("session_clients").where("tenant", "=", tenant);
      await ("sid" in by ? del.where("sid", "=", by.sid) : del.where("subject", "=", by.subject)).execute();
      return rows;
    });
  }
  /** The sessions of a user still on record, newest first (the admin view). */
  listSessionClients(tenant: string, subject: string) {
    return this.db.selectFrom("session_clients").selectAll().where("tenant", "=", tenant).where("subject", "=", subject).where("expires_at", ">", now()).orderBy("created_at", "desc").execute();
  }

  /** Deletes what has expired; run by the housekeeping timer. */
  async sweep(): Promise<void> {
    const t = now();
    await this.db.deleteFrom("used_jtis").where("expires_at", "<", t).execute();
    await this.db.deleteFrom("session_clients").where("expires_at", "<", t).execute();
    await this.db.deleteFrom("auth_requests").where("expires_at", "<", t - 3600).execute();
    await this.db.deleteFrom("codes").where("expires_at", "<", t - 86_400).execute();
    await this.db.deleteFrom("revoked_tokens").where("expires_at", "<", t).execute();
    await this.db.deleteFrom("access_tokens").where("expires_at", "<", t).execute();
    await this.db.deleteFrom("opaque_tokens").where("expires_at", "<", t).execute();
    await this.db.deleteFrom("device_codes").where("expires_at", "<", t - 3600).execute();
    await this.db.deleteFrom("device_attempts").where("window_start", "<", t - 86_400).execute();
    await this.db.deleteFrom("refresh_tokens").where("expires_at", "<", t).execute();
    await sql`DELETE FROM grants WHERE expires_at < ${t}`.execute(this.db);
  }
}
