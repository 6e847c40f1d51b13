/** identity-authz's schema, versioned. A new change is a new entry; never edit an applied one. */
import { sql, type Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "tenants, clients, keys, grants",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("tenants")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("display_name", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("clients")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("doc", "text", (c) => c.notNull()) // JSON of the registration (no secret)
        .addColumn("secret_hash", "text") // SHA-256 hex of a 256-bit random secret
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("clients_pk", ["tenant", "client_id"])
        .execute();
      await db.schema
        .createTable("signing_keys")
        .addColumn("kid", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("alg", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull()) // current | retired
        .addColumn("public_jwk", "text", (c) => c.notNull())
        .addColumn("private_jwk", "blob", (c) => c.notNull()) // barrier ciphertext
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("retired_at", "integer")
        .addColumn("publish_until", "integer")
        .execute();
      // At most one current key per tenant and algorithm, even with several instances.
      await sql`CREATE UNIQUE INDEX signing_keys_current ON signing_keys (tenant, alg) WHERE status = 'current'`.execute(db);
      await db.schema
        .createTable("auth_requests")
        .addColumn("id", "text", (c) => c.primaryKey()) // pending-request id, or SHA-256 of a PAR request_uri
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull()) // par | pending
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("params", "blob", (c) => c.notNull()) // barrier ciphertext (login_hint is personal data)
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addColumn("used", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable("codes")
        .addColumn("hash", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("data", "blob", (c) => c.notNull()) // barrier ciphertext
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addColumn("used", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("grant_id", "text")
        .execute();
      await db.schema
        .createTable("grants")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("scope", "text", (c) => c.notNull())
        .addColumn("data", "blob", (c) => c.notNull()) // barrier ciphertext: claims, auth_time, amr, acr
        .addColumn("dpop_jkt", "text")
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addColumn("revoked", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex("grants_by_subject").on("grants").columns(["tenant", "subject", "client_id"]).execute();
      await db.schema
        .createTable("refresh_tokens")
        .addColumn("hash", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("grant_id", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addColumn("used", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
      // Access tokens of user grants only (client_credentials tokens have no row): links a jti to its grant.
      await db.schema
        .createTable("access_tokens")
        .addColumn("jti", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("grant_id", "text", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("revoked_tokens")
        .addColumn("jti", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .execute();
      // Single-use identifiers: client assertion jti, DPoP proof jti, login verifier jti.
      await db.schema
        .createTable("used_jtis")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("jti", "text", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("used_jtis_pk", ["tenant", "kind", "jti"])
        .execute();
    },
  },
  {
    version: 2,
    name: "tenant scopes",
    async up(db: Kysely<any>) {
      // Scopes a tenant defines beyond the OIDC ones, and the user claims each releases.
      await db.schema
        .createTable("tenant_scopes")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("description", "text", (c) => c.notNull())
        .addColumn("claims", "text", (c) => c.notNull()) // JSON array of claim names
        .addPrimaryKeyConstraint("tenant_scopes_pk", ["tenant", "name"])
        .execute();
    },
  },
  {
    version: 3,
    name: "opaque access tokens",
    async up(db: Kysely<any>) {
      // Opaque access tokens: SHA-256 of the token, and the claims a JWT would carry (no secret).
      await db.schema
        .createTable("opaque_tokens")
        .addColumn("hash", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("claims", "text", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 4,
    name: "device authorization grant",
    async up(db: Kysely<any>) {
      // RFC 8628: one row per device_code (stored as SHA-256), found by the user_code the user types.
      await db.schema
        .createTable("device_codes")
        .addColumn("hash", "text", (c) => c.primaryKey()) // SHA-256 hex of the device_code
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("user_code", "text", (c) => c.notNull()) // normalized: 8 letters of an unambiguous alphabet
        .addColumn("params", "blob", (c) => c.notNull()) // barrier ciphertext: scope, resource
        .addColumn("status", "text", (c) => c.notNull()) // pending | approved | denied | issued
        .addColumn("login", "blob") // barrier ciphertext of the user's sign-in, once signed in
        .addColumn("confirm_hash", "text") // SHA-256 of the one-time approval token shown after sign-in
        .addColumn("poll_interval", "integer", (c) => c.notNull())
        .addColumn("last_poll", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("grant_id", "text")
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("device_codes_user_code").on("device_codes").columns(["tenant", "user_code"]).unique().execute();
      // Failed user_code entries per tenant and client address, in fixed windows (brute-force bound).
      await db.schema
        .createTable("device_attempts")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("source", "text", (c) => c.notNull())
        .addColumn("window_start", "integer", (c) => c.notNull())
        .addColumn("failures", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("device_attempts_pk", ["tenant", "source"])
        .execute();
    },
  },
  {
    version: 5,
    name: "dynamic client registration",
    async up(db: Kysely<any>) {
      // RFC 7591 per tenant: off unless a row says so; the initial access token as SHA-256.
      await db.schema
        .createTable("registration_settings")
        .addColumn("tenant", "text", (c) => c.primaryKey())
        .addColumn("enabled", "integer", (c) => c.notNull())
        .addColumn("doc", "text", (c) => c.notNull()) // JSON: scopes, audiences, require_initial_access_token
        .addColumn("initial_token_hash", "text")
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      // RFC 7592: the registration access token of a dynamically registered client, as SHA-256.
      await db.schema
        .createTable("registration_tokens")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("hash", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("registration_tokens_pk", ["tenant", "client_id"])
        .execute();
    },
  },
  {
    version: 6,
    name: "pairwise subject salt",
    async up(db: Kysely<any>) {
      // OIDC Core §8.1: the per-tenant salt of pairwise subject identifiers (barrier ciphertext).
      await db.schema
        .createTable("tenant_secrets")
        .addColumn("tenant", "text", (c) => c.primaryKey())
        .addColumn("pairwise_salt", "blob", (c) => c.notNull())
        .addColumn("created_at", "integer", (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 7,
    name: "back-channel logout sessions",
    async up(db: Kysely<any>) {
      // Which clients each idp session (`sid`) signed in to, for OIDC back-channel logout.
      await db.schema
        .createTable("session_clients")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("sid", "text", (c) => c.notNull())
        .addColumn("client_id", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("session_clients_pk", ["tenant", "sid", "client_id"])
        .execute();
      await db.schema.createIndex("session_clients_by_subject").on("session_clients").columns(["tenant", "subject"]).execute();
    },
  },
];
