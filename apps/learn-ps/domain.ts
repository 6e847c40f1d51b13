/** learn-ps's rules: pets per tenant, owner notes encrypted through the barrier. No HTTP here. */
import { decodePageToken, encodePageToken } from "../../src/storage/page-token.ts";
import { AppError, notFound } from "../../src/service/errors.ts";
import type { DataProtector } from "../../src/service/context.ts";
import type { CreatePetInput, ListPetsInput, PetView, UpdatePetInput } from "../../schemas/learn-ps.ts";
import type { PetRow, PetStore } from "./store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The note of pet `id` is bound to that pet: a ciphertext moved to another row fails to decrypt. */
const noteContext = (tenant: string, id: string) => `learn-ps/pets/${tenant}/${id}/owner_note`;


export class PetService {
  constructor(
    private readonly store: PetStore,
    private readonly protector: DataProtector,
  ) {}

  private async view(row: PetRow): Promise<PetView> {
    return {
      id: row.id,
      name: row.name,
      species: row.species as PetView["species"],
      age_years: row.age_years,
      tags: JSON.parse(row.tags) as string[],
      owner_note: row.owner_note ? dec.decode(await this.protector.decrypt(row.owner_note, noteContext(row.tenant, row.id))) : null,
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
  }

  async create(tenant: string, input: CreatePetInput): Promise<PetView> {
    const id = crypto.randomUUID();
    const now = new Date().toISOString();
    const row = {
      id,
      tenant,
      name: input.name,
      species: input.species,
      age_years: input.age_years ?? null,
      tags: JSON.stringify([...new Set(input.tags)]),
      owner_note: input.owner_note != null ? await this.protector.encrypt(enc.encode(input.owner_note), noteContext(tenant, id)) : null,
      created_at: now,
      updated_at: now,
    };
    await this.store.insert(row);
    return this.view({ ...row, seq: 0 });
  }

  async get(tenant: string, id: string): Promise<PetView> {
    const row = await this.store.get(tenant, id);
    if (!row) throw notFound("pet");
    return this.view(row);
  }

  async list(tenant: string, q: ListPetsInput): Promise<{ items: PetView[]; next_page_token: string | null }> {
    const limit = q.limit ?? 20;
    const rows = await this.store.list(tenant, {
      species: q.species,
      namePrefix: q.name_prefix,
      tag: q.tag,
      afterSeq: q.page_token ? decodePageToken(q.page_token) : undefined,
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    return {
      items: await Promise.all(page.map((r) => this.view(r))),
      next_page_token: rows.length > limit ? encodePageToken(page[page.length - 1]!.seq) : null,
    };
  }

  async update(tenant: string, id: string, patch: UpdatePetInput): Promise<PetView> {
    const set: Parameters<PetStore["update"]>[2] = { updated_at: new Date().toISOString() };
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.species !== undefined) set.species = patch.species;
    if (patch.age_years !== undefined) set.age_years = patch.age_years;
    if (patch.tags !== undefined) set.tags = JSON.stringify([...new Set(patch.tags)]);
    if (patch.owner_note !== undefined) {
      set.owner_note = patch.owner_note === null ? null : await this.protector.encrypt(enc.encode(patch.owner_note), noteContext(tenant, id));
    }
    if (!(await this.store.update(tenant, id, set))) throw notFound("pet");
    return this.get(tenant, id);
  }

  async delete(tenant: string, id: string): Promise<void> {
    if (!(await this.store.delete(tenant, id))) throw notFound("pet");
  }
}
