/** Request and response schemas of identity-rs (the reference resource server), shared by its routes and its OpenAPI document. */
import * as v from "valibot";

export const NoteId = v.object({ id: v.pipe(v.string(), v.uuid()) });

const title = v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200));
const body = v.pipe(v.string(), v.maxLength(8192));

export const CreateNote = v.strictObject({ title, body: v.optional(body, "") });
export const UpdateNote = v.strictObject({ title: v.optional(title), body: v.optional(body) });

export const Note = v.object({ id: v.string(), title: v.string(), body: v.string(), created_at: v.string(), updated_at: v.string() });
export const NoteList = v.object({ items: v.array(Note) });

/** What the access token said: who called, for which tenant, with which scopes and binding. */
export const Profile = v.object({
  tenant: v.string(),
  subject: v.string(),
  client_id: v.nullable(v.string()),
  scopes: v.array(v.string()),
  /** How the token was bound to its sender: `dpop` (RFC 9449), `mtls` (RFC 8705) or `none`. */
  binding: v.picklist(["dpop", "mtls", "none"]),
});

export type CreateNoteInput = v.InferOutput<typeof CreateNote>;
export type UpdateNoteInput = v.InferOutput<typeof UpdateNote>;
export type NoteView = v.InferOutput<typeof Note>;
