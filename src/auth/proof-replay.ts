/**
 * The template's store of spent DPoP proof ids (`jkt:jti`), in the service's own database: one
 * conditional insert per proof, so two instances on one PostgreSQL database cannot both accept
 * the same proof. Rows live until the proof window has passed and are swept on a timer.
 */
import type { Kysely } from "kysely";
import type { ProofReplayStore } from "./dpop.ts";

/** Migration creating the table; part of the template's migrations. */
export async function createProofReplayTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("dpop_proofs")
    .ifNotExists()
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("expires_at", "integer", (c) => c.notNull())
    .execute();
}

export class DatabaseProofReplay implements ProofReplayStore {
  constructor(private readonly db: Kysely<any>) {}

  async useOnce(key: string, expiresAt: number): Promise<boolean> {
    const r = await this.db
      .insertInto("dpop_proofs")
      .values({ key, expires_at: expiresAt })
      .onConflict((oc) => oc.column("key").doNothing())
      .executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Deletes the ids whose window has passed. */
  async sweep(now = Math.floor(Date.now() / 1000)): Promise<void> {
    await this.db.deleteFrom("dpop_proofs").where("expires_at", "<", now).execute();
  }
}
