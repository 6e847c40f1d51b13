/** Kysely queries of sm-im. Every query takes the tenant: there is no query without one. */
import type { Kysely, Transaction } from "kysely";
import { nextSeq, withTransaction } from "../../src/storage/index.ts";

export interface DeviceRow {
  tenant: string;
  id: string;
  subject: string;
  subject_name: string | null;
  name: string;
  public_key: string;
  /** The device's ML-KEM-768 encapsulation key (base64url), for the hybrid; null without one. */
  kem_public_key: string | null;
  created_at: string;
}

export interface MessageRow {
  tenant: string;
  id: string;
  seq: number;
  sender: string;
  sender_name: string | null;
  recipients: string;
  protected: string;
  iv: string;
  ciphertext: string;
  tag: string;
  size: number;
  created_at: string;
  expires_at: string;
}

export interface BoxRow {
  tenant: string;
  subject: string;
  box: "inbox" | "sent";
  message_id: string;
  seq: number;
}

export interface CopyRow {
  tenant: string;
  message_id: string;
  device_id: string;
  subject: string;
  header: string;
  encrypted_key: string;
}

export interface ImDb {
  im_devices: DeviceRow;
  im_messages: MessageRow;
  im_boxes: BoxRow;
  im_copies: CopyRow;
}

type Db = Kysely<ImDb> | Transaction<ImDb>;

export type MessageSummaryRow = Pick<MessageRow, "id" | "seq" | "sender" | "sender_name" | "recipients" | "size" | "created_at" | "expires_at">;

export class ImStore {
  constructor(private readonly db: Kysely<ImDb>) {}

  devices(tenant: string, subject: string): Promise<DeviceRow[]> {
    return this.db.selectFrom("im_devices").selectAll().where("tenant", "=", tenant).where("subject", "=", subject).orderBy("created_at").execute();
  }

  device(tenant: string, id: string): Promise<DeviceRow | undefined> {
    return this.db.selectFrom("im_devices").selectAll().where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
  }

  /** The devices of these users (all of them for a contact list, capped). */
  devicesOf(tenant: string, subjects?: readonly string[], limit = 1000): Promise<DeviceRow[]> {
    let q = this.db.selectFrom("im_devices").selectAll().where("tenant", "=", tenant);
    if (subjects) q = q.where("subject", "in", subjects.length ? [...subjects] : [""]);
    return q.orderBy("subject").orderBy("created_at").limit(limit).execute();
  }

  async insertDevice(row: DeviceRow, max: number): Promise<boolean> {
    return withTransaction(this.db, async (trx) => {
      const { n } = await trx.selectFrom("im_devices").select((eb) => eb.fn.countAll<number>().as("n")).where("tenant", "=", row.tenant).where("subject", "=", row.subject).executeTakeFirstOrThrow();
      if (Number(n) >= max) return false;
      await trx.insertInto("im_devices").values(row).execute();
      return true;
    });
  }

  /** Removes a device and the content keys wrapped for it (they open nothing without it). */
  async deleteDevice(tenant: string, subject: string, id: string): Promise<boolean> {
    return withTransaction(this.db, async (trx) => {
      const r = await trx.deleteFrom("im_devices").where("tenant", "=", tenant).where("subject", "=", subject).where("id", "=", id).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) return false;
      await trx.deleteFrom("im_copies").where("tenant", "=", tenant).where("device_id", "=", id).execute();
      return true;
    });
  }

  /** Stores a message, its boxes and its copies in one transaction. */
  async insertMessage(msg: Omit<MessageRow, "seq">, copies: CopyRow[], inboxes: readonly string[]): Promise<void> {
    await withTransaction(this.db, async (trx) => {
      await trx.insertInto("im_messages").values({ ...msg, seq: nextSeq(trx as Kysely<any>, "im_messages", msg.tenant) as never }).execute();
      const { seq } = await trx.selectFrom("im_messages").select("seq").where("tenant", "=", msg.tenant).where("id", "=", msg.id).executeTakeFirstOrThrow();
      const boxes: BoxRow[] = [{ tenant: msg.tenant, subject: msg.sender, box: "sent", message_id: msg.id, seq }, ...inboxes.map((s) => ({ tenant: msg.tenant, subject: s, box: "inbox" as const, message_id: msg.id, seq }))];
      await trx.insertInto("im_boxes").values(boxes).execute();
      for (let i = 0; i < copies.length; i += 100) await trx.insertInto("im_copies").values(copies.slice(i, i + 100)).execute();
    });
  }

  /** A box, newest first, from before `beforeSeq`. */
  box(tenant: string, subject: string, box: "inbox" | "sent", limit: number, beforeSeq?: number): Promise<MessageSummaryRow[]> {
    let q = this.db
      .selectFrom("im_boxes as b")
      .innerJoin("im_messages as m", (j) => j.onRef("m.tenant", "=", "b.tenant").onRef("m.id", "=", "b.message_id"))
      .select(["m.id", "m.seq", "m.sender", "m.sender_name", "m.recipients", "m.size", "m.created_at", "m.expires_at"])
      .where("b.tenant", "=", tenant)
      .where("b.subject", "=", subject)
      .where("b.box", "=", box);
    if (beforeSeq !== undefined) q = q.where("b.seq", "<", beforeSeq);
    return q.orderBy("b.seq", "desc").limit(limit).execute();
  }

  /** Whether the user still holds the message in a box. */
  async holds(tenant: string, subject: string, messageId: string): Promise<boolean> {
    const r = await this.db.selectFrom("im_boxes").select("box").where("tenant", "=", tenant).where("subject", "=", subject).where("message_id", "=", messageId).executeTakeFirst();
    return r !== undefined;
  }

  message(tenant: string, id: string): Promise<MessageRow | undefined> {
    return this.db.selectFrom("im_messages").selectAll().where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
  }

  copy(tenant: string, messageId: string, deviceId: string): Promise<CopyRow | undefined> {
    return this.db.selectFrom("im_copies").selectAll().where("tenant", "=", tenant).where("message_id", "=", messageId).where("device_id", "=", deviceId).executeTakeFirst();
  }

  /** Takes the message out of the user's boxes (and their devices' copies); the last holder's delete removes it. */
  async deleteFor(tenant: string, subject: string, messageId: string): Promise<boolean> {
    return withTransaction(this.db, async (trx) => {
      const r = await trx.deleteFrom("im_boxes").where("tenant", "=", tenant).where("subject", "=", subject).where("message_id", "=", messageId).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) return false;
      await trx.deleteFrom("im_copies").where("tenant", "=", tenant).where("message_id", "=", messageId).where("subject", "=", subject).execute();
      const left = await trx.selectFrom("im_boxes").select("subject").where("tenant", "=", tenant).where("message_id", "=", messageId).executeTakeFirst();
      if (!left) {
        await trx.deleteFrom("im_copies").where("tenant", "=", tenant).where("message_id", "=", messageId).execute();
        await trx.deleteFrom("im_messages").where("tenant", "=", tenant).where("id", "=", messageId).execute();
      }
      return true;
    });
  }

  /** Deletes up to `limit` messages past their expiry, with their boxes and copies; returns how many. */
  async sweep(now: string, limit = 500): Promise<number> {
    return withTransaction(this.db, async (trx) => {
      const due = await trx.selectFrom("im_messages").select(["tenant", "id"]).where("expires_at", "<=", now).limit(limit).execute();
      for (const m of due) {
        await trx.deleteFrom("im_boxes").where("tenant", "=", m.tenant).where("message_id", "=", m.id).execute();
        await trx.deleteFrom("im_copies").where("tenant", "=", m.tenant).where("message_id", "=", m.id).execute();
        await trx.deleteFrom("im_messages").where("tenant", "=", m.tenant).where("id", "=", m.id).execute();
      }
      return due.length;
    });
  }
}
