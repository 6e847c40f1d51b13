/** identity-rs's HTTP layer: routes, schemas, status codes, scopes. Rules live in domain.ts. */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../src/service/http.ts";
import { CreateNote, Note, NoteId, NoteList, Profile, UpdateNote } from "../../schemas/identity-rs.ts";
import { profileOf, type NoteBook } from "./domain.ts";

const READ = ["notes:read"];
const WRITE = ["notes:write"];

export function rsRoutes(notes: NoteBook) {
  return new Elysia({ tags: ["identity-rs"] } as never)
    .use(appBase)
    .get("/profile", ({ request }) => profileOf(principalOf(request)), {
      response: Profile,
      scopes: [],
      detail: { summary: "Who the access token says the caller is (any valid token)" },
    })
    .post(
      "/notes",
      async ({ request, body, set }) => {
        set.status = 201;
        return notes.create(principalOf(request), body);
      },
      { body: CreateNote, response: { 201: Note }, scopes: WRITE, detail: { summary: "Create a note of the token's subject" } },
    )
    .get("/notes", ({ request }) => notes.list(principalOf(request)), { response: NoteList, scopes: READ, detail: { summary: "List the subject's notes (first 100)" } })
    .get("/notes/:id", ({ request, params }) => notes.get(principalOf(request), params.id), { params: NoteId, response: Note, scopes: READ, detail: { summary: "Get a note" } })
    .patch("/notes/:id", ({ request, params, body }) => notes.update(principalOf(request), params.id, body), {
      params: NoteId,
      body: UpdateNote,
      response: Note,
      scopes: WRITE,
      detail: { summary: "Update a note" },
    })
    .delete(
      "/notes/:id",
      async ({ request, params, set }) => {
        await notes.delete(principalOf(request), params.id);
        set.status = 204;
      },
      { params: NoteId, response: { 204: v.undefined() }, scopes: WRITE, detail: { summary: "Delete a note" } },
    );
}
