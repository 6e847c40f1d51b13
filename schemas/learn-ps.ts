/** Request and response schemas of learn-ps, shared by its routes and its OpenAPI document. */
import * as v from "valibot";

export const SPECIES = ["dog", "cat", "bird", "fish", "reptile", "rabbit", "other"] as const;

const name = v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(100));
const tag = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "tags are lowercase words of up to 32 characters"));

export const PetId = v.object({ id: v.pipe(v.string(), v.uuid()) });

export const CreatePet = v.strictObject({
  name,
  species: v.picklist(SPECIES),
  age_years: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(200))),
  tags: v.optional(v.pipe(v.array(tag), v.maxLength(16)), []),
  /** Private note of the owner; stored encrypted. */
  owner_note: v.optional(v.pipe(v.string(), v.maxLength(4096))),
});

export const UpdatePet = v.strictObject({
  name: v.optional(name),
  species: v.optional(v.picklist(SPECIES)),
  age_years: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(200)))),
  tags: v.optional(v.pipe(v.array(tag), v.maxLength(16))),
  owner_note: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(4096)))),
});

export const ListPetsQuery = v.strictObject({
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(100))),
  page_token: v.optional(v.pipe(v.string(), v.maxLength(200))),
  species: v.optional(v.picklist(SPECIES)),
  name_prefix: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(100))),
  tag: v.optional(tag),
});

export const Pet = v.object({
  id: v.string(),
  name: v.string(),
  species: v.picklist(SPECIES),
  age_years: v.nullable(v.number()),
  tags: v.array(v.string()),
  owner_note: v.nullable(v.string()),
  created_at: v.string(),
  updated_at: v.string(),
});

export const PetList = v.object({
  items: v.array(Pet),
  next_page_token: v.nullable(v.string()),
});

export type CreatePetInput = v.InferOutput<typeof CreatePet>;
export type UpdatePetInput = v.InferOutput<typeof UpdatePet>;
export type ListPetsInput = v.InferOutput<typeof ListPetsQuery>;
export type PetView = v.InferOutput<typeof Pet>;
