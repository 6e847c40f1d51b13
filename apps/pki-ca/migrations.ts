/** pki-ca's schema, versioned. A new change is a new entry; never edit an applied one. */
import { sql, type Kysely } from "kysely";
import { addAcmeAuthorizationReuseValidity, addAcmeChallengesAriLimits, createAcmeTables, keyAcmeNoncesByExpiry, clusterAcmeOrdersAuthorizations } from "./acme/migrations.ts";
import { createEstTables } from "./est/migrations.ts";
import { createScepTables } from "./scep/migrations.ts";
import { createCmpTables } from "./cmp/migrations.ts";
import { addCmcNonceAgeIndex, createCmcTables } from "./cmc/migrations.ts";

export const migrations = [
  {
    version: 1,
    name: "create CA hierarchy, certificates, requests and CRLs",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("pki_cas")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("kind", "text", (c) => c.notNull()) // root | issuing | ocsp | tsa
        .addColumn("key_type", "text", (c) => c.notNull())
        .addColumn("parent_id", "text")
        .addColumn("cert_der", "blob", (c) => c.notNull())
        .addColumn("key_sealed", "blob", (c) => c.notNull()) // barrier ciphertext of the PKCS#8 key, never plaintext
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("pki_certificates")
        .addColumn("serial", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("ca_id", "text", (c) => c.notNull())
        .addColumn("profile", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("sans", "text", (c) => c.notNull()) // JSON array of "dns:x", "ip:x", ...
        .addColumn("key_type", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull()) // valid | revoked
        .addColumn("not_before", "text", (c) => c.notNull())
        .addColumn("not_after", "text", (c) => c.notNull())
        .addColumn("revoked_at", "text")
        .addColumn("revocation_reason", "integer")
        .addColumn("request_id", "text", (c) => c.notNull())
        .addColumn("cert_der", "blob", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("pki_certificates_by_tenant").on("pki_certificates").columns(["tenant", "created_at"]).execute();
      await db.schema.createIndex("pki_certificates_revoked").on("pki_certificates").columns(["ca_id", "status"]).execute();
      await db.schema
        .createTable("pki_requests")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("profile", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull()) // pending | issued | rejected
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("sans", "text", (c) => c.notNull())
        .addColumn("validity_days", "integer", (c) => c.notNull())
        .addColumn("csr_der", "blob", (c) => c.notNull())
        .addColumn("reasons", "text", (c) => c.notNull()) // JSON array
        .addColumn("serial", "text")
        .addColumn("decided_by", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("decided_at", "text")
        .execute();
      await db.schema.createIndex("pki_requests_by_tenant_status").on("pki_requests").columns(["tenant", "status"]).execute();
      await db.schema
        .createTable("pki_crls")
        .addColumn("ca_id", "text", (c) => c.primaryKey())
        .addColumn("number", "integer", (c) => c.notNull())
        .addColumn("der", "blob", (c) => c.notNull())
        .addColumn("this_update", "text", (c) => c.notNull())
        .addColumn("next_update", "text", (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: "expiry notices",
    async up(db: Kysely<any>) {
      await db.schema.alterTable("pki_certificates").addColumn("expiry_notified", "integer").execute();
    },
  },
  {
    version: 3,
    name: "CRL shards and renewable responder and TSA certificates",
    async up(db: Kysely<any>) {
      // Fixed per issuing CA when it is created; null (older CAs) means one unsharded CRL.
      await db.schema.alterTable("pki_cas").addColumn("crl_shards", "integer").execute();
      // The CRL shard a certificate's CRLDP names, decided at issuance; null when unsharded.
      await db.schema.alterTable("pki_certificates").addColumn("crl_shard", "integer").execute();
      // One index serves revoked-by-CA and revoked-by-shard reads (one less to maintain per issuance).
      await db.schema.dropIndex("pki_certificates_revoked").execute();
      await db.schema.createIndex("pki_certificates_revoked").on("pki_certificates").columns(["ca_id", "status", "crl_shard"]).execute();
    },
  },
  {
    version: 4,
    name: "counters shared by the instances of one database",
    async up(db: Kysely<any>) {
      // "revocations": bumped by every revocation, so other instances know to re-sign OCSP
      // answers; "crl:<scope>": the last CRL number handed out for a CRL scope.
      await db.schema
        .createTable("pki_counters")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("value", "integer", (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 5,
    name: "ACME accounts, orders, authorizations and external account keys",
    up: createAcmeTables,
  },
  {
    version: 6,
    name: "EST credentials and requests, SCEP challenges and transactions",
    async up(db: Kysely<any>) {
      await createEstTables(db);
      await createScepTables(db);
    },
  },
  {
    version: 7,
    name: "ACME dns-01 and tls-alpn-01, wildcards, ARI replaces, shared nonces, rate limits",
    up: addAcmeChallengesAriLimits,
  },
  {
    version: 8,
    name: "ACME authorizations reused across orders, requested notBefore/notAfter",
    up: addAcmeAuthorizationReuseValidity,
  },
  {
    version: 9,
    name: "CMP shared secrets and transactions",
    up: createCmpTables,
  },
  {
    version: 10,
    name: "CMC credentials, transactions and senderNonces",
    up: createCmcTables,
  },
  {
    version: 11,
    name: "the enrollment protocol each request and certificate came through",
    async up(db: Kysely<any>) {
      // api, acme, est, scep, cmp or cmc; rows made before this column came through the API or ACME, shown as api.
      await db.schema.alterTable("pki_requests").addColumn("origin", "text", (c) => c.notNull().defaultTo("api")).execute();
      await db.schema.alterTable("pki_certificates").addColumn("origin", "text", (c) => c.notNull().defaultTo("api")).execute();
    },
  },
  {
    version: 12,
    name: "CMC senderNonces by age (pruned by the sweep)",
    up: addCmcNonceAgeIndex,
  },
  {
    version: 13,
    name: "ACME spent nonces keyed by expiry first",
    up: keyAcmeNoncesByExpiry,
  },
  {
    version: 14,
    name: "ACME orders and authorizations clustered by id; orders by serial and by replaces only where set",
    up: clusterAcmeOrdersAuthorizations,
  },
  {
    version: 15,
    name: "the CRL index holds revoked certificates only",
    async up(db: Kysely<any>) {
      // Read only for CRLs (status = 'revoked', by CA and shard, for deltas from a revocation
      // time): valid certificates, nearly all of them, no longer add an entry at issuance.
      await db.schema.dropIndex("pki_certificates_revoked").execute();
      await db.schema
        .createIndex("pki_certificates_revoked")
        .on("pki_certificates")
        .columns(["ca_id", "crl_shard", "revoked_at"])
        .where(sql.ref("status"), "=", "revoked")
        .execute();
    },
  },
];
