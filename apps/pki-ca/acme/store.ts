/**
 * Kysely queries of pki-ca's ACME front end. Every query takes the tenant. Writes are units of
 * one group transaction (`GroupTransaction`): the writes that concurrent requests make
 * meanwhile (orders, challenge claims and results, order moves, spent nonces) share one
 * transaction and one WAL sync, which runs off the event loop; each unit resolves once its
 * batch is durable, or, for a claim or a derived state (`durable: false`), once it has
 * committed and so is visible to every instance. The point reads that every order's requests
 * make (the signing account, the order, its authorizations) are compiled once (`precompile`):
 * building a Kysely query tree for each was most of their cost; so are the writes of every
 * order, once per shape (`shapedStatements`: the columns a move sets, the rows an insert has).
 */
import { sql, type Kysely, type Transaction } from "kysely";
import { GroupTransaction, precompile, precompileStatement, shapedStatements, type StatementHandle } from "../../../src/storage/index.ts";
import { Lru } from "../../../src/keyring/lru.ts";

export interface AccountRow {
  id: string;
  tenant: string;
  thumbprint: string;
  jwk: string;
  status: "valid" | "deactivated";
  contact: string;
  eab_kid: string | null;
  created_at: string;
}

export type OrderStatus = "pending" | "ready" | "processing" | "valid" | "invalid";

export interface OrderRow {
  id: string;
  tenant: string;
  account_id: string;
  status: OrderStatus;
  identifiers: string;
  profile: string;
  expires: string;
  error: string | null;
  request_id: string | null;
  serial: string | null;
  created_at: string;
  /** ARI (RFC 9773): the serial of the certificate this order replaces. */
  replaces: string | null;
  /** The validity the order asked for (ISO times), or null for the profile's. */
  not_before: string | null;
  not_after: string | null;
}

export interface AuthorizationRow {
  id: string;
  tenant: string;
  account_id: string;
  order_id: string;
  identifier_type: "dns" | "ip";
  identifier_value: string;
  /** 1 for a wildcard's authorization (value without `*.`; dns-01 only). */
  wildcard: number;
  status: "pending" | "valid" | "invalid" | "deactivated";
  expires: string;
  token: string;
  challenge_status: "pending" | "processing" | "valid" | "invalid";
  /** The challenge the client answered (its status is challenge_status); null before. */
  challenge_type: "http-01" | "dns-01" | "tls-alpn-01" | null;
  validated_at: string | null;
  error: string | null;
}

export interface EabKeyRow {
  kid: string;
  tenant: string;
  hmac_sealed: Uint8Array;
  account_id: string | null;
  created_at: string;
  bound_at: string | null;
}

export interface AcmeDb {
  acme_accounts: AccountRow;
  acme_orders: OrderRow;
  acme_authorizations: AuthorizationRow;
  /** Which authorizations each order uses: its own, and the live ones of the account it reused. */
  acme_order_authorizations: { tenant: string; order_id: string; authz_id: string };
  acme_eab_keys: EabKeyRow;
  acme_nonce_keys: { id: string; key_sealed: Uint8Array; created_at: string };
  acme_nonces_spent: { expires: number; nonce: string };
  acme_rate_events: { tenant: string; kind: string; subject: string; at: number };
}

export type RateKind = "account-orders" | "identifier-orders" | "ip-accounts";

/** Units per shared transaction at most. */
const WRITE_BATCH = 256;
/** Entries kept at most by each of the in-process caches below (least recently used dropped first). */
const CACHE_ENTRIES = 8192;

export interface AcmeStoreOptions {
  /**
   * Keep account rows in this process between requests (every request of an account reads
   * its row). Only where this process is the only one that writes the accounts of its
   * database: an embedded file that one pki-ca serves ACME from (`nonce_scope` resolved to
   * `instance`). Each write of an account drops its entry before it starts and after it has
   * committed, so no request sees a row older than the last committed write.
   */
  cacheAccounts?: boolean;
}

export class AcmeStore {
  private readonly accountById: (tenant: string, id: string) => Promise<AccountRow[]>;
  private readonly orderById: (tenant: string, id: string) => Promise<OrderRow[]>;
  private readonly orderOfSerial: (tenant: string, serial: string) => Promise<OrderRow[]>;
  private readonly authorizationById: (tenant: string, id: string) => Promise<AuthorizationRow[]>;
  private readonly authorizationIdsOfOrder: (tenant: string, orderId: string) => Promise<Array<{ authz_id: string }>>;

  /** Every write of this store, group-committed with the writes of concurrent requests. */
  private readonly writes: GroupTransaction<AcmeDb, Transaction<AcmeDb>>;
  private readonly insertNonce: ReturnType<typeof precompileStatement<AcmeDb, [string, number]>>;
  private readonly shaped: ReturnType<typeof shapedStatements<AcmeDb>>;
  private readonly claimOrder: ReturnType<typeof precompileStatement<AcmeDb, [string, string]>>;
  private readonly reusable: (tenant: string, accountId: string, type: string, value: string, wildcard: number, valid: string, pending: string, after: string) => Promise<AuthorizationRow[]>;

  /** Account rows by tenant and id (see `cacheAccounts`). */
  private readonly accounts: Lru<string, AccountRow> | undefined;
  /**
   * An order's authorization ids: fixed when the order is made (no statement changes or deletes
   * an order's links), so kept whatever else writes the database.
   */
  private readonly orderAuthorizations = new Lru<string, readonly string[]>(CACHE_ENTRIES);

  constructor(
    readonly db: Kysely<AcmeDb>,
    opts: AcmeStoreOptions = {},
  ) {
    this.accounts = opts.cacheAccounts ? new Lru(CACHE_ENTRIES) : undefined;
    this.writes = new GroupTransaction(db, (trx) => trx, { maxBatch: WRITE_BATCH, gatherMs: 0 });
    this.shaped = shapedStatements(db);
    this.claimOrder = precompileStatement(
      db,
      (tenant: string, id: string) =>
        db
          .updateTable("acme_orders")
          .set({ status: sql.lit("processing") })
          .where("tenant", "=", tenant)
          .where("id", "=", id)
          .where((eb) =>
            eb.or([
              eb("status", "=", sql.lit("ready")),
              eb.and([
                eb("status", "=", sql.lit("pending")),
                eb.not(
                  eb.exists(
                    eb
                      .selectFrom("acme_order_authorizations as l")
                      .innerJoin("acme_authorizations as a", (j) => j.onRef("a.id", "=", "l.authz_id").onRef("a.tenant", "=", "l.tenant"))
                      .select("a.id")
                      .whereRef("l.tenant", "=", "acme_orders.tenant")
                      .whereRef("l.order_id", "=", "acme_orders.id")
                      .where("a.status", "!=", sql.lit("valid")),
                  ),
                ),
              ]),
            ]),
          ),
      ["t", "i"],
    );
    this.reusable = precompile(
      db,
      (tenant: string, accountId: string, type: string, value: string, wildcard: number, valid: string, pending: string, after: string) =>
        db
          .selectFrom("acme_authorizations")
          .selectAll()
          .where("tenant", "=", tenant)
          .where("account_id", "=", accountId)
          .where("identifier_type", "=", type as AuthorizationRow["identifier_type"])
          .where("identifier_value", "=", value)
          .where("wildcard", "=", wildcard)
          .where("status", "in", [valid, pending] as AuthorizationRow["status"][])
          .where("expires", ">", after),
      ["t", "a", "dns", "v", 0, "valid", "pending", "e"],
    );
    this.insertNonce = precompileStatement(
      db,
      (nonce: string, expires: number) => db.insertInto("acme_nonces_spent").values({ nonce, expires }).onConflict((oc) => oc.columns(["expires", "nonce"]).doNothing()).returning("nonce"),
      ["n", 1],
    );
    this.accountById = precompile(db, (tenant: string, id: string) => db.selectFrom("acme_accounts").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
    this.orderById = precompile(db, (tenant: string, id: string) => db.selectFrom("acme_orders").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
    this.authorizationById = precompile(db, (tenant: string, id: string) => db.selectFrom("acme_authorizations").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
    this.orderOfSerial = precompile(db, (tenant: string, serial: string) => db.selectFrom("acme_orders").selectAll().where("tenant", "=", tenant).where("serial", "=", serial), ["t", "s"]);
    // The link rows alone (the primary key's covering index, in authz_id order), then each
    // authorization by its key: a third of what the join of the two tables cost per order read
    // (about 10 us against 30 us on SQLite), and each part is a point read the row cache keeps.
    this.authorizationIdsOfOrder = precompile(
      db,
      (tenant: string, orderId: string) => db.selectFrom("acme_order_authorizations").select("authz_id").where("tenant", "=", tenant).where("order_id", "=", orderId).orderBy("authz_id"),
      ["t", "o"],
    );
  }

  private write<T>(work: (trx: Transaction<AcmeDb>) => Promise<T>, durable = true): Promise<T> {
    return this.writes.run(work, { durable });
  }

  /** A write that is one statement (an UPDATE by key, an idempotent INSERT): no savepoint of its own. */
  private writeOne<T>(work: (trx: Transaction<AcmeDb>) => Promise<T>, durable = true): Promise<T> {
    return this.writes.run(work, { durable, savepoint: false });
  }

  /**
   * Records a replay nonce as used; true when no instance had recorded it before. Committed
   * (so every instance sees it used) before the request goes on; not awaited to disk: a crash
   * could only forget nonces that expire within their lifetime anyway.
   */
  spendNonce(nonce: string, expires: number): Promise<boolean> {
    return this.writeOne(async (trx) => (await this.insertNonce<{ nonce: string }>(trx, nonce, expires)).rows.length === 1, false);
  }

  async pruneNonces(before: number): Promise<void> {
    await this.write((trx) => trx.deleteFrom("acme_nonces_spent").where("expires", "<", before).execute(), false);
  }

  async account(tenant: string, id: string): Promise<AccountRow | undefined> {
    if (!this.accounts) return (await this.accountById(tenant, id))[0];
    const key = `${tenant}/${id}`;
    const cached = this.accounts.get(key);
    if (cached) return { ...cached };
    const row = (await this.accountById(tenant, id))[0];
    if (row) this.accounts.set(key, { ...row });
    return row;
  }

  /** A write of the account `tenant`/`id`: its cached row is dropped before the write and again once it has committed. */
  private async accountWrite<T>(tenant: string, id: string, write: () => Promise<T>): Promise<T> {
    const key = `${tenant}/${id}`;
    this.accounts?.delete(key);
    try {
      return await write();
    } finally {
      this.accounts?.delete(key);
    }
  }

  accountByThumbprint(tenant: string, thumbprint: string): Promise<AccountRow | undefined> {
    return this.db.selectFrom("acme_accounts").selectAll().where("tenant", "=", tenant).where("thumbprint", "=", thumbprint).executeTakeFirst();
  }

  /**
   * Creates an account and, with an EAB key, binds that key to it in the same transaction;
   * false when the key was bound to another account meanwhile (nothing is stored then).
   */
  async insertAccount(row: AccountRow): Promise<boolean> {
    return this.write(async (trx) => {
      if (row.eab_kid) {
        const bound = await trx
          .updateTable("acme_eab_keys")
          .set({ account_id: row.id, bound_at: row.created_at })
          .where("tenant", "=", row.tenant)
          .where("kid", "=", row.eab_kid)
          .where("account_id", "is", null)
          .executeTakeFirst();
        if (bound.numUpdatedRows === 0n) return false;
      }
      await trx.insertInto("acme_accounts").values(row).execute();
      return true;
    });
  }

  async updateAccount(tenant: string, id: string, patch: Partial<Pick<AccountRow, "status" | "contact">>): Promise<void> {
    await this.accountWrite(tenant, id, () => this.writeOne((trx) => trx.updateTable("acme_accounts").set(patch).where("tenant", "=", tenant).where("id", "=", id).execute()));
  }

  /** Key rollover: the account's key changes; false when another account of the tenant has that key (unique index). */
  async changeAccountKey(tenant: string, id: string, jwk: string, thumbprint: string): Promise<boolean> {
    try {
      const r = await this.accountWrite(tenant, id, () => this.write((trx) => trx.updateTable("acme_accounts").set({ jwk, thumbprint }).where("tenant", "=", tenant).where("id", "=", id).where("status", "=", "valid").executeTakeFirst()));
      return r.numUpdatedRows > 0n;
    } catch {
      return false;
    }
  }

  /** The orders (not invalid) that name `serial` as the certificate they replace. */
  replacing(tenant: string, serial: string): Promise<Array<Pick<OrderRow, "id" | "status">>> {
    return this.db.selectFrom("acme_orders").select(["id", "status"]).where("tenant", "=", tenant).where("replaces", "=", serial).where("status", "!=", "invalid").execute();
  }

  /**
   * Rate limiting: the events of `kind` for `subject` since `since`, oldest first (at most
   * `limit`); the caller compares with the limit and records a new event with `recordRate`.
   */
  async rateEvents(tenant: string, kind: RateKind, subject: string, since: number, limit: number): Promise<number[]> {
    const rows = await this.db.selectFrom("acme_rate_events").select("at").where("tenant", "=", tenant).where("kind", "=", kind).where("subject", "=", subject).where("at", ">", since).orderBy("at").limit(limit).execute();
    return rows.map((r) => Number(r.at));
  }

  /** Rate-limit events on their own (committed; the next durable write takes them to disk). */
  async recordRate(events: Array<{ tenant: string; kind: RateKind; subject: string; at: number }>): Promise<void> {
    if (events.length) await this.write((trx) => trx.insertInto("acme_rate_events").values(events).execute(), false);
  }

  async pruneRates(before: number): Promise<void> {
    await this.write((trx) => trx.deleteFrom("acme_rate_events").where("at", "<", before).execute(), false);
  }

  /**
   * A new order, its new authorizations, its links to those and to the reused ones (`reused`:
   * ids), and the rate-limit events it counts as, in one durable commit.
   */
  async insertOrder(order: OrderRow, authzs: AuthorizationRow[], events: Array<{ tenant: string; kind: RateKind; subject: string; at: number }> = [], reused: string[] = []): Promise<void> {
    // Inserts of new ids only: nothing but a broken database refuses them, so no savepoint of
    // their own (a batch that fails runs again unit by unit, each in one).
    await this.writes.run(async (trx) => {
      if (events.length) await this.insertRows(trx, "acme_rate_events", events);
      await this.insertRows(trx, "acme_orders", [order]);
      if (authzs.length) await this.insertRows(trx, "acme_authorizations", authzs);
      const links = [...authzs.map((a) => a.id), ...reused].map((authz_id) => ({ tenant: order.tenant, order_id: order.id, authz_id }));
      if (links.length) await this.insertRows(trx, "acme_order_authorizations", links);
    }, { savepoint: false });
    // Kept only once committed; in id order, as the read below gives them.
    this.orderAuthorizations.set(`${order.tenant}/${order.id}`, Object.freeze([...authzs.map((a) => a.id), ...reused].sort()));
  }

  /**
   * The account's newest authorization for an identifier that is still usable: valid or pending,
   * expiring after `after` (ISO time); undefined when there is none.
   */
  async reusableAuthorization(tenant: string, accountId: string, type: AuthorizationRow["identifier_type"], value: string, wildcard: number, after: string): Promise<AuthorizationRow | undefined> {
    // Chosen here rather than by ORDER BY ... LIMIT 1, which made SQLite open a sorter on every
    // newOrder, usually for no row at all: valid before pending, then the latest expiry.
    let best: AuthorizationRow | undefined;
    for (const a of await this.reusable(tenant, accountId, type, value, wildcard, "valid", "pending", after)) {
      if (!best || (a.status === "valid" && best.status !== "valid") || (a.status === best.status && a.expires > best.expires)) best = a;
    }
    return best;
  }

  async order(tenant: string, id: string): Promise<OrderRow | undefined> {
    return (await this.orderById(tenant, id))[0];
  }

  async orderBySerial(tenant: string, serial: string): Promise<OrderRow | undefined> {
    return (await this.orderOfSerial(tenant, serial))[0];
  }

  ordersOf(tenant: string, accountId: string, limit: number): Promise<Array<Pick<OrderRow, "id">>> {
    return this.db.selectFrom("acme_orders").select("id").where("tenant", "=", tenant).where("account_id", "=", accountId).orderBy("created_at", "desc").limit(limit).execute();
  }

  /**
   * Moves an order from one of `from` to a new state; false when it was in none of them (a
   * concurrent change). `durable: false` for a claim or a state derived again after a crash.
   */
  async moveOrder(tenant: string, id: string, from: OrderStatus[], patch: Partial<Pick<OrderRow, "status" | "error" | "request_id" | "serial">>, durable = true): Promise<boolean> {
    return this.writeOne(async (trx) => (await this.update(trx, "acme_orders", patch, tenant, id, "status", from)) > 0, durable);
  }

  /**
   * Finalize's claim: the order moves to processing if it is ready, stored or derived (pending
   * with every authorization valid, checked in the same statement); false otherwise. Committed,
   * not awaited to disk: the issuance's own durable commit syncs it too.
   */
  claimForFinalize(tenant: string, id: string): Promise<boolean> {
    return this.writeOne(async (trx) => (await this.claimOrder(trx, tenant, id)).changes > 0, false);
  }

  async authorization(tenant: string, id: string): Promise<AuthorizationRow | undefined> {
    return (await this.authorizationById(tenant, id))[0];
  }

  /** The ids of the authorizations an order uses (its own and the reused ones), in id order; fixed when the order is made. */
  async authorizationIdsOf(tenant: string, orderId: string): Promise<string[]> {
    const key = `${tenant}/${orderId}`;
    const cached = this.orderAuthorizations.get(key);
    if (cached) return [...cached];
    const ids = (await this.authorizationIdsOfOrder(tenant, orderId)).map((l) => l.authz_id);
    // An order without links is one not found (every order has at least one): not kept.
    if (ids.length) this.orderAuthorizations.set(key, Object.freeze([...ids]));
    return ids;
  }

  /** Authorizations by id (an order's, from `authorizationIdsOf`), in the order given; ids not found are left out. */
  async authorizationsByIds(tenant: string, ids: readonly string[]): Promise<AuthorizationRow[]> {
    const rows = await Promise.all(ids.map((id) => this.authorization(tenant, id)));
    return rows.filter((a): a is AuthorizationRow => a !== undefined);
  }

  /** Changes an authorization only while its challenge is in one of `from`; false otherwise. */
  async moveAuthorization(tenant: string, id: string, from: AuthorizationRow["challenge_status"][], patch: Partial<Pick<AuthorizationRow, "status" | "challenge_status" | "challenge_type" | "validated_at" | "error" | "expires">>, durable = true): Promise<boolean> {
    return this.writeOne(async (trx) => (await this.update(trx, "acme_authorizations", patch, tenant, id, "challenge_status", from)) > 0, durable);
  }

  async deactivateAuthorization(tenant: string, id: string): Promise<void> {
    await this.writeOne((trx) => trx.updateTable("acme_authorizations").set({ status: "deactivated" }).where("tenant", "=", tenant).where("id", "=", id).where("status", "in", ["pending", "valid"]).execute());
  }

  /** UPDATE `table` SET `patch` of one row (tenant, id) while `column` is one of `from`; the rows changed. */
  private async update<T extends "acme_orders" | "acme_authorizations">(trx: StatementHandle<AcmeDb>, table: T, patch: object, tenant: string, id: string, column: "status" | "challenge_status", from: readonly string[]): Promise<number> {
    const cols = Object.keys(patch).filter((c) => (patch as Record<string, unknown>)[c] !== undefined);
    const params = [...cols.map((c) => (patch as Record<string, unknown>)[c]), tenant, id, ...from];
    const n = cols.length;
    const r = await this.shaped(trx, `${table}|${cols.join(",")}|${column}|${from.length}`, params, (q, p) =>
      q
        .updateTable(table as "acme_orders")
        .set(Object.fromEntries(cols.map((c, i) => [c, p[i]])) as never)
        .where("tenant", "=", p[n] as string)
        .where("id", "=", p[n + 1] as string)
        .where(column as "status", "in", p.slice(n + 2) as never),
    );
    return r.changes;
  }

  /** A multi-row INSERT of rows with the same columns in the same order. */
  private async insertRows<T extends "acme_orders" | "acme_authorizations" | "acme_order_authorizations" | "acme_rate_events">(trx: StatementHandle<AcmeDb>, table: T, rows: ReadonlyArray<AcmeDb[T]>): Promise<void> {
    const cols = Object.keys(rows[0]!);
    const params = rows.flatMap((r) => cols.map((c) => (r as Record<string, unknown>)[c]));
    await this.shaped(trx, `${table}|${cols.join(",")}|${rows.length}`, params, (q, p) =>
      q.insertInto(table).values(rows.map((_, i) => Object.fromEntries(cols.map((c, j) => [c, p[i * cols.length + j]]))) as never),
    );
  }

  async insertEabKey(row: EabKeyRow): Promise<void> {
    await this.write((trx) => trx.insertInto("acme_eab_keys").values(row).execute());
  }

  eabKey(tenant: string, kid: string): Promise<EabKeyRow | undefined> {
    return this.db.selectFrom("acme_eab_keys").selectAll().where("tenant", "=", tenant).where("kid", "=", kid).executeTakeFirst();
  }

  eabKeys(tenant: string): Promise<Array<Omit<EabKeyRow, "hmac_sealed">>> {
    return this.db.selectFrom("acme_eab_keys").select(["kid", "tenant", "account_id", "created_at", "bound_at"]).where("tenant", "=", tenant).orderBy("created_at").execute();
  }

  async deleteEabKey(tenant: string, kid: string): Promise<boolean> {
    const r = await this.write((trx) => trx.deleteFrom("acme_eab_keys").where("tenant", "=", tenant).where("kid", "=", kid).executeTakeFirst());
    return r.numDeletedRows > 0n;
  }
}
