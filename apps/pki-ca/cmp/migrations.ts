/**
 * The CMP tables, added to pki-ca's one migration history (migrations.ts, version 9).
 * Certificates and RA requests stay in pki_certificates and pki_requests; these only point at them.
 */
import type { Kysely } from "kysely";
import { createSealedCredentialTable } from "../credential-table.ts";

export async function createCmpTables(db: Kysely<any>): Promise<void> {
  // PBM shared secrets, one profile each (the MAC needs the secret itself).
  await createSealedCredentialTable(db, "cmp_credentials", "kid");
  // Every transaction id seen (a new request reusing one is refused: transactionIdInUse), and
  // what certConf and pollReq continue: the RA request, the certificate, who may continue it.
  await db.schema
    .createTable("cmp_transactions")
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("transaction_id", "text", (c) => c.notNull())
    .addColumn("body_type", "integer", (c) => c.notNull())
    .addColumn("profile", "text", (c) => c.notNull())
    .addColumn("principal", "text", (c) => c.notNull()) // kid:<kid> or cert:<serial>
    .addColumn("state", "text", (c) => c.notNull()) // pending | issued | confirmed | rejected | done
    .addColumn("request_id", "text")
    .addColumn("serial", "text")
    .addColumn("cert_req_id", "integer", (c) => c.notNull())
    .addColumn("implicit_confirm", "integer", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("cmp_transactions_pk", ["tenant", "transaction_id"])
    .execute();
}
