/** Kysely queries of pki-ca. Certificates and requests are tenant-scoped; CA material and CRLs are instance-wide. */
import { CompiledQuery, sql, type Compilable, type Kysely } from "kysely";
import { directStatementOf, engineOf, greatest, GroupCommit, likeIgnoringCase, precompile, runPrepared } from "../../src/storage/index.ts";

export interface CaRow {
  id: string;
  kind: "root" | "issuing" | "ocsp" | "tsa" | "scep-ra" | "cmp-ra";
  key_type: string;
  parent_id: string | null;
  cert_der: Uint8Array;
  key_sealed: Uint8Array;
  created_at: string;
  /** Issuing CAs: the number of CRL shards, fixed at creation (null: one unsharded CRL). */
  crl_shards?: number | null;
}

export interface CertificateRow {
  serial: string;
  tenant: string;
  ca_id: string;
  profile: string;
  subject: string;
  sans: string;
  key_type: string;
  status: "valid" | "revoked";
  not_before: string;
  not_after: string;
  revoked_at: string | null;
  revocation_reason: number | null;
  request_id: string;
  /** The enrollment protocol the request came through (see `Origin`). */
  origin: string;
  cert_der: Uint8Array;
  created_at: string;
  /** The smallest expiry-notice threshold (days) already sent, or null. */
  expiry_notified?: number | null;
  /** The CRL shard named in the certificate's CRLDP (null when its CA is unsharded). */
  crl_shard?: number | null;
}

export interface RequestRow {
  id: string;
  tenant: string;
  profile: string;
  status: "pending" | "issued" | "rejected";
  subject: string;
  sans: string;
  validity_days: number;
  csr_der: Uint8Array;
  reasons: string;
  serial: string | null;
  decided_by: string | null;
  /** The enrollment protocol the request came through (see `Origin`). */
  origin: string;
  created_at: string;
  decided_at: string | null;
}

export interface CrlRow {
  ca_id: string;
  number: number;
  der: Uint8Array;
  this_update: string;
  next_update: string;
}

export interface PkiDb {
  pki_cas: CaRow;
  pki_certificates: CertificateRow;
  pki_requests: RequestRow;
  pki_crls: CrlRow;
  pki_counters: { name: string; value: number };
}

export interface CertificateFilter {
  serial?: string;
  subject?: string;
  san?: string;
  status?: "valid" | "revoked";
  expires_before?: string;
  limit: number;
}

/** Rows per group commit: well under SQLite's bound-parameter limit (16 columns each). */
const MAX_BATCH = 100;
/**
 * How long the first certificate of a batch waits for others: a few milliseconds of gathering
 * turns many commits (and WAL syncs) into one.
 */
const GATHER_MS = 2;

const REVOCATIONS = "revocations";

/** Adds one to a counter (creating it at `floor`), never leaving it below `floor`; returns the new value. */
async function bumpCounter(db: Kysely<PkiDb>, name: string, floor: number): Promise<number> {
  const r = await db
    .insertInto("pki_counters")
    .values({ name, value: floor })
    .onConflict((oc) => oc.column("name").doUpdateSet({ value: greatest(db, sql<number>`pki_counters.value + 1`, sql.ref<number>("excluded.value")) }))
    .returning("value")
    .executeTakeFirstOrThrow();
  return Number(r.value);
}

export class PkiStore {
  /** Issued certificates and their requests, group-committed (see GroupCommit). */
  private readonly issued: GroupCommit<PkiDb, { cert: CertificateRow; request: RequestRow }>;
  /** A certificate by tenant and serial: read by every ACME certificate download and by the protocols' revocations, so compiled once. */
  private readonly certificateByKey: (tenant: string, serial: string) => Promise<CertificateRow[]>;

  constructor(readonly db: Kysely<PkiDb>) {
    this.certificateByKey = precompile(db, (tenant: string, serial: string) => db.selectFrom("pki_certificates").selectAll().where("tenant", "=", tenant).where("serial", "=", serial), ["t", "s"]);
    const postgres = engineOf(db) === "postgres";
    this.issued = new GroupCommit(
      db,
      async (on, rows) => {
        const certs = rows.map((r) => r.cert);
        const requests = rows.map((r) => r.request);
        // PostgreSQL: both tables in one statement (a data-modifying WITH), no transaction around it.
        if (postgres) await this.insertRows(on, [certs, requests], ([c, r]) => on.with("c", (w) => w.insertInto("pki_certificates").values(c as never)).insertInto("pki_requests").values(r as never));
        else {
          await this.insertRows(on, [certs], ([c]) => on.insertInto("pki_certificates").values(c as never));
          await this.insertRows(on, [requests], ([r]) => on.insertInto("pki_requests").values(r as never));
        }
      },
      { maxBatch: MAX_BATCH, gatherMs: GATHER_MS, singleStatement: postgres, powerOfTwoBatches: postgres },
    );
  }

  /**
   * Stores an issued certificate and its request, together with those of concurrent calls
   * (one transaction per batch, on PostgreSQL one statement, instead of two commits per
   * certificate); resolves once on
   * disk. A failing batch (a duplicate serial, say) is retried row by row.
   */
  insertIssued(cert: CertificateRow, request: RequestRow): Promise<void> {
    return this.issued.add({ cert, request });
  }

  /** Compiled multi-row INSERTs by tables, columns and row counts (a handful of shapes in practice). */
  private readonly insertSql = new Map<string, string | null>();

  /**
   * A multi-row INSERT (of one table, or several in one statement) whose SQL Kysely compiles
   * once per shape; later batches only bind values. Used when each table's rows have the same
   * columns in the same order and the compiled parameters are exactly the row values in that
   * order (checked once with sentinel values); otherwise the query builder runs as usual.
   */
  private async insertRows(on: Kysely<PkiDb>, tables: object[][], build: (tables: object[][]) => Compilable<unknown>): Promise<void> {
    const shapes = tables.map((rows) => {
      const columns = Object.keys(rows[0]!);
      const same = rows.every((r) => {
        const k = Object.keys(r);
        return k.length === columns.length && k.every((c, i) => c === columns[i]);
      });
      return same ? columns : null;
    });
    const key = shapes.every((c) => c !== null) ? tables.map((rows, t) => `${rows.length}|${shapes[t]!.join(",")}`).join("|") : undefined;
    let compiled = key === undefined ? null : this.insertSql.get(key);
    if (compiled === undefined) {
      const sentinels = tables.map((rows, t) => rows.map(() => Object.fromEntries(shapes[t]!.map((c) => [c, { sentinel: c }]))));
      const c = build(sentinels).compile();
      const expected = sentinels.flat().flatMap((r) => Object.values(r));
      compiled = c.parameters.length === expected.length && c.parameters.every((p, i) => Object.is(p, expected[i])) ? c.sql : null;
      if (this.insertSql.size < 8 * MAX_BATCH) this.insertSql.set(key!, compiled);
    }
    if (compiled === null) {
      await on.executeQuery(build(tables).compile());
      return;
    }
    const params = tables.flatMap((rows, t) => rows.flatMap((r) => shapes[t]!.map((c) => (r as Record<string, unknown>)[c])));
    // Embedded: straight to the connection Kysely holds for this transaction (Kysely's
    // CompiledQuery freezes the batch's parameter array, about 4% of an issuance's CPU).
    // PostgreSQL: a prepared statement, one of a few shapes (batches of a power of two rows).
    const direct = on.isTransaction ? directStatementOf(this.db) : undefined;
    if (direct) direct(compiled, params);
    else if (!on.isTransaction) await runPrepared(this.db, compiled, params);
    else await on.executeQuery(CompiledQuery.raw(compiled, params));
  }

  async getCa(id: string): Promise<CaRow | undefined> {
    return this.db.selectFrom("pki_cas").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** Inserts a CA record unless one with that id exists (another start won the race); returns the stored one. */
  async putCaOnce(row: CaRow): Promise<CaRow> {
    await this.db.insertInto("pki_cas").values(row).onConflict((oc) => oc.column("id").doNothing()).execute();
    return (await this.getCa(row.id))!;
  }

  /** Swaps a CA level's certificate and sealed key, only if it still holds `oldCert`; false otherwise. */
  async replaceCaCertificate(id: string, oldCert: Uint8Array, cert: Uint8Array, keySealed: Uint8Array): Promise<boolean> {
    const r = await this.db.updateTable("pki_cas").set({ cert_der: cert, key_sealed: keySealed }).where("id", "=", id).where("cert_der", "=", oldCert).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async insertCertificate(row: CertificateRow): Promise<void> {
    await this.db.insertInto("pki_certificates").values(row).execute();
  }

  /** Any tenant's certificate by serial: for OCSP and CRLs, which answer for the whole instance. */
  async certificateBySerial(serial: string): Promise<CertificateRow | undefined> {
    return this.db.selectFrom("pki_certificates").selectAll().where("serial", "=", serial).executeTakeFirst();
  }

  async certificate(tenant: string, serial: string): Promise<CertificateRow | undefined> {
    return (await this.certificateByKey(tenant, serial))[0];
  }

  searchCertificates(tenant: string, f: CertificateFilter): Promise<CertificateRow[]> {
    let q = this.db.selectFrom("pki_certificates").selectAll().where("tenant", "=", tenant);
    if (f.serial) q = q.where("serial", "=", f.serial);
    // The schema admits no LIKE wildcards (% _) in these filters, so they match literally.
    if (f.subject) q = q.where("subject", likeIgnoringCase(this.db), `%${f.subject}%`);
    if (f.san) q = q.where("sans", likeIgnoringCase(this.db), `%${f.san}%`);
    if (f.status) q = q.where("status", "=", f.status);
    if (f.expires_before) q = q.where("not_after", "<", f.expires_before);
    return q.orderBy("created_at", "desc").limit(f.limit).execute();
  }

  /**
   * Revokes a valid certificate and bumps the revocation counter in the same transaction;
   * returns the counter's new value, or undefined when the certificate was not valid.
   */
  async revoke(tenant: string, serial: string, at: string, reason: number): Promise<number | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const r = await trx
        .updateTable("pki_certificates")
        .set({ status: "revoked", revoked_at: at, revocation_reason: reason })
        .where("tenant", "=", tenant)
        .where("serial", "=", serial)
        .where("status", "=", "valid")
        .executeTakeFirst();
      if (r.numUpdatedRows === 0n) return undefined;
      return bumpCounter(trx, REVOCATIONS, 1);
    });
  }

  /** How many revocations the database has seen (any instance's): compared, never interpreted. */
  async revocationCount(): Promise<number> {
    const r = await this.db.selectFrom("pki_counters").select("value").where("name", "=", REVOCATIONS).executeTakeFirst();
    return Number(r?.value ?? 0);
  }

  /**
   * The next CRL number of a scope, at least `floor`: one atomic statement, so instances
   * sharing the database never hand out the same number twice.
   */
  allocateCrlNumber(scope: string, floor: number): Promise<number> {
    return bumpCounter(this.db, `crl:${scope}`, floor);
  }

  /**
   * Revoked certificates of an issuing CA: all of them, or (shard given) those of one CRL
   * shard, optionally only those revoked at or after `since` (ISO time, for delta CRLs).
   */
  revokedOf(caId: string, opts: { shard?: number; since?: string } = {}): Promise<Array<Pick<CertificateRow, "serial" | "revoked_at" | "revocation_reason">>> {
    let q = this.db.selectFrom("pki_certificates").select(["serial", "revoked_at", "revocation_reason"]).where("ca_id", "=", caId);
    if (opts.shard !== undefined) q = q.where("crl_shard", "=", opts.shard);
    // A literal, not a parameter: the index holds only revoked rows (migration 15), which a
    // plan made without the value (PostgreSQL's generic plans) could not know it may use.
    q = q.where("status", "=", sql.lit("revoked"));
    if (opts.since !== undefined) q = q.where("revoked_at", ">=", opts.since);
    return q.execute();
  }

  async insertRequest(row: RequestRow): Promise<void> {
    await this.db.insertInto("pki_requests").values(row).execute();
  }

  async request(tenant: string, id: string): Promise<RequestRow | undefined> {
    return this.db.selectFrom("pki_requests").selectAll().where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
  }

  listRequests(tenant: string, status: RequestRow["status"], limit: number): Promise<RequestRow[]> {
    return this.db.selectFrom("pki_requests").selectAll().where("tenant", "=", tenant).where("status", "=", status).orderBy("created_at").limit(limit).execute();
  }

  /** Moves a pending request to its decision; false when it was no longer pending (decided concurrently). */
  async decide(tenant: string, id: string, patch: Pick<RequestRow, "status" | "decided_by" | "decided_at"> & Partial<Pick<RequestRow, "serial" | "reasons">>): Promise<boolean> {
    const r = await this.db.updateTable("pki_requests").set(patch).where("tenant", "=", tenant).where("id", "=", id).where("status", "=", "pending").executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  /** Undoes an approval whose issuance failed (matched by the serial it claimed). */
  async reopen(tenant: string, id: string, serial: string): Promise<void> {
    await this.db
      .updateTable("pki_requests")
      .set({ status: "pending", serial: null, decided_by: null, decided_at: null })
      .where("tenant", "=", tenant)
      .where("id", "=", id)
      .where("serial", "=", serial)
      .execute();
  }

  async crl(caId: string): Promise<CrlRow | undefined> {
    return this.db.selectFrom("pki_crls").selectAll().where("ca_id", "=", caId).executeTakeFirst();
  }

  /**
   * Stores a CRL unless one with a higher number is stored already (another instance signed
   * later); false then.
   */
  async putCrl(row: CrlRow): Promise<boolean> {
    const r = await this.db
      .insertInto("pki_crls")
      .values(row)
      .onConflict((oc) => oc.column("ca_id").doUpdateSet({ number: row.number, der: row.der, this_update: row.this_update, next_update: row.next_update }).where("pki_crls.number", "<", row.number))
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) > 0;
  }
}
