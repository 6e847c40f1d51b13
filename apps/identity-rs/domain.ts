/**
 * identity-rs's rules (no HTTP): a caller's profile as its access token states it, and notes
 * owned by the token's subject within its tenant, their bodies barrier-encrypted and bound to
 * their row.
 */
import { notFound } from "../../src/service/errors.ts";
import type { DataProtector } from "../../src/service/context.ts";
import type { Principal } from "../../src/auth/bearer.ts";
import type { CreateNoteInput, NoteView, UpdateNoteInput } from "../../schemas/identity-rs.ts";
import type { NoteRow, NoteStore } from "./store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bodyContext = (r: Pick<NoteRow, "tenant" | "owner" | "id">) => `identity-rs/notes/${r.tenant}/${r.owner}/${r.id}`;

/** The caller as the access token names it (the route has already checked binding and scopes). */
export function profileOf(p: Principal) {
  const c = p.confirmation;
  return {
    tenant: p.tenant,
    subject: p.subject,
    client_id: p.clientId ?? null,
    scopes: [...p.scopes].sort(),
    binding: c?.jkt ? ("dpop" as const) : c?.["x5t#S256"] ? ("mtls" as const) : ("none" as const),
  };
}

export class NoteBook {
  constructor(
    private readonly store: NoteStore,
    private readonly protector: DataProtector,
  ) {}

  private async view(r: NoteRow): Promise<NoteView> {
    return { id: r.id, title: r.title, body: dec.decode(await this.protector.decrypt(r.body, bodyContext(r))), created_at: r.created_at, updated_at: r.updated_at };
  }

  async create(p: Principal, input: CreateNoteInput): Promise<NoteView> {
    const now = new Date().toISOString();
    const key = { tenant: p.tenant, owner: p.subject, id: crypto.randomUUID() };
    const row: NoteRow = { ...key, title: input.title, body: await this.protector.encrypt(enc.encode(input.body), bodyContext(key)), created_at: now, updated_at: now };
    await this.store.insert(row);
    return this.view(row);
  }

  async get(p: Principal, id: string): Promise<NoteView> {
    const r = await this.store.get(p.tenant, p.subject, id);
    if (!r) throw notFound("note");
    return this.view(r);
  }

  async list(p: Principal): Promise<{ items: NoteView[] }> {
    return { items: await Promise.all((await this.store.list(p.tenant, p.subject)).map((r) => this.view(r))) };
  }

  async update(p: Principal, id: string, patch: UpdateNoteInput): Promise<NoteView> {
    const r = await this.store.get(p.tenant, p.subject, id);
    if (!r) throw notFound("note");
    const body = patch.body === undefined ? r.body : await this.protector.encrypt(enc.encode(patch.body), bodyContext(r));
    const next = { ...r, title: patch.title ?? r.title, body, updated_at: new Date().toISOString() };
    if (!(await this.store.update(p.tenant, p.subject, id, next))) throw notFound("note");
    return this.view(next);
  }

  async delete(p: Principal, id: string): Promise<void> {
    if (!(await this.store.delete(p.tenant, p.subject, id))) throw notFound("note");
  }
}
