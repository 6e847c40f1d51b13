/** identity-idp's schema, versioned. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "users, factors, sessions, consents, throttles, keys",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("users")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("username", "text", (c) => c.notNull()) // lower-case, unique per tenant
        .addColumn("password_hash", "text") // Argon2id PHC string; null: no password yet
        .addColumn("name", "text")
        .addColumn("email", "text")
        .addColumn("email_verified", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("disabled", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("password_changed_at", "integer")
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("updated_at", "integer", (c) => c.notNull())
        .addColumn("seq", "integer", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("users_by_name").unique().on("users").columns(["tenant", "username"]).execute();
      await db.schema.createIndex("users_by_seq").on("users").columns(["tenant", "seq"]).execute();
      await db.schema
        .createTable("otp_factors")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull()) // totp | hotp
        .addColumn("seed", "blob", (c) => c.notNull()) // barrier ciphertext
        .addColumn("confirmed", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("last_step", "integer") // TOTP: last accepted step (replay protection)
        .addColumn("counter", "integer", (c) => c.notNull().defaultTo(0)) // HOTP: next counter
        .addColumn("created_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("otp_by_user").on("otp_factors").columns(["tenant", "user_id"]).execute();
      await db.schema
        .createTable("recovery_codes")
        .addColumn("code_hash", "text", (c) => c.primaryKey()) // SHA-256 hex of user id + code
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("used_at", "integer")
        .execute();
      await db.schema.createIndex("recovery_by_user").on("recovery_codes").columns(["tenant", "user_id"]).execute();
      await db.schema
        .createTable("idp_sessions")
        .addColumn("id_hash", "text", (c) => c.primaryKey()) // SHA-256 hex of the cookie value
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text") // set once fully authenticated
        .addColumn("auth_time", "integer")
        .addColumn("amr", "text")
        .addColumn("flow", "text", (c) => c.notNull()) // JSON: the login in progress
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("last_seen_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addColumn("revoked", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex("idp_sessions_by_user").on("idp_sessions").columns(["tenant", "user_id"]).execute();
      await db.schema
        .createTable("consents")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("scopes", "text", (c) => c.notNull()) // sorted, space-separated
        .addColumn("granted_at", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("consents_pk", ["tenant", "user_id", "client_id"])
        .execute();
      await db.schema
        .createTable("login_throttle")
        .addColumn("key", "text", (c) => c.primaryKey()) // "u:{tenant}:{username}" or "ip:{address}"
        .addColumn("failures", "integer", (c) => c.notNull())
        .addColumn("locked_until", "integer", (c) => c.notNull())
        .addColumn("updated_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("tenant_policies")
        .addColumn("tenant", "text", (c) => c.primaryKey())
        .addColumn("mfa", "text", (c) => c.notNull())
        .addColumn("updated_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("idp_keys")
        .addColumn("kid", "text", (c) => c.primaryKey())
        .addColumn("status", "text", (c) => c.notNull()) // current | retired
        .addColumn("public_jwk", "text", (c) => c.notNull())
        .addColumn("private_jwk", "blob", (c) => c.notNull()) // barrier ciphertext
        .addColumn("created_at", "integer", (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: "signing key rotation",
    async up(db: Kysely<any>) {
      await db.schema.alterTable("idp_keys").addColumn("retired_at", "integer").execute();
    },
  },
  {
    version: 3,
    name: "sealed login flows",
    // The login in progress held the login challenge (and its login_hint) in clear. Flows are
    // short-lived: the plaintext ones are dropped, not converted; a login under way restarts,
    // signed-in sessions stay signed in.
    async up(db: Kysely<any>) {
      await db.schema.alterTable("idp_sessions").addColumn("flow_sealed", "blob").execute();
      await db.schema.alterTable("idp_sessions").dropColumn("flow").execute();
    },
  },
  {
    version: 4,
    name: "passkeys, YubiKeys, Yubico API clients, e-mail tokens, tenant sign-up and user verification policy",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("webauthn_credentials")
        .addColumn("id", "text", (c) => c.primaryKey()) // credential id, base64url (unique across tenants: authenticators make random ids)
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("public_key", "blob", (c) => c.notNull()) // COSE public key (public: not sealed)
        .addColumn("counter", "integer", (c) => c.notNull())
        .addColumn("transports", "text", (c) => c.notNull()) // JSON array
        .addColumn("fmt", "text", (c) => c.notNull()) // attestation format seen at registration
        .addColumn("aaguid", "text", (c) => c.notNull())
        .addColumn("backed_up", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("last_used_at", "integer")
        .execute();
      await db.schema.createIndex("webauthn_by_user").on("webauthn_credentials").columns(["tenant", "user_id"]).execute();
      await db.schema
        .createTable("yubikeys")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("public_id", "text", (c) => c.notNull()) // modhex
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("secret", "blob", (c) => c.notNull()) // barrier ciphertext of AES key (16) + private id (6)
        .addColumn("session_counter", "integer", (c) => c.notNull().defaultTo(-1))
        .addColumn("use_counter", "integer", (c) => c.notNull().defaultTo(-1))
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("last_used_at", "integer")
        .execute();
      await db.schema.createIndex("yubikeys_by_public_id").unique().on("yubikeys").columns(["tenant", "public_id"]).execute();
      await db.schema.createIndex("yubikeys_by_user").on("yubikeys").columns(["tenant", "user_id"]).execute();
      await db.schema
        .createTable("yubico_clients")
        .addColumn("id", "integer", (c) => c.primaryKey()) // the protocol's numeric client id
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("key", "blob", (c) => c.notNull()) // barrier ciphertext of the HMAC-SHA1 key
        .addColumn("created_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("email_tokens")
        .addColumn("token_hash", "text", (c) => c.primaryKey()) // SHA-256 hex of the token in the link
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull()) // magic | register | reset | email_change
        .addColumn("user_id", "text")
        .addColumn("browser_hash", "text") // SHA-256 hex of the asking browser's nonce cookie (magic links)
        .addColumn("data", "blob") // barrier ciphertext of the kind's payload
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addColumn("used_at", "integer")
        .execute();
      await db.schema.createIndex("users_by_email").on("users").columns(["tenant", "email"]).execute();
      await db.schema.alterTable("tenant_policies").addColumn("self_registration", "integer", (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable("tenant_policies").addColumn("user_verification", "text", (c) => c.notNull().defaultTo("preferred")).execute();
    },
  },
  {
    version: 5,
    name: "client certificates registered for sign-in",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("user_certificates")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("user_id", "text", (c) => c.notNull())
        .addColumn("x5t_s256", "text", (c) => c.notNull()) // base64url SHA-256 of the certificate's DER
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("not_after", "integer", (c) => c.notNull())
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("last_used_at", "integer")
        .execute();
      await db.schema.createIndex("user_certificates_by_x5t").unique().on("user_certificates").columns(["tenant", "x5t_s256"]).execute();
      await db.schema.createIndex("user_certificates_by_user").on("user_certificates").columns(["tenant", "user_id"]).execute();
    },
  },
  {
    version: 6,
    name: "tenant password policy",
    async up(db: Kysely<any>) {
      await db.schema.alterTable("tenant_policies").addColumn("password_min_length", "integer").execute();
    },
  },
  {
    version: 7,
    name: "tenant policy: certificate sign-in by e-mail SAN",
    async up(db: Kysely<any>) {
      await db.schema.alterTable("tenant_policies").addColumn("certificate_email", "integer", (c) => c.notNull().defaultTo(0)).execute();
    },
  },
  {
    version: 8,
    name: "tenant policy: certificate sign-in by UPN SAN",
    async up(db: Kysely<any>) {
      await db.schema.alterTable("tenant_policies").addColumn("certificate_upn", "integer", (c) => c.notNull().defaultTo(0)).execute();
    },
  },
];
