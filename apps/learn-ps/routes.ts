/** learn-ps's HTTP layer: routes, schemas, status codes. Rules live in domain.ts. */
import { Elysia } from "elysia";
import * as v from "valibot";
import { apiRoute, appBase, principalOf } from "../../src/service/http.ts";
import type { FastRoute } from "../../src/service/context.ts";
import { CreatePet, ListPetsQuery, Pet, PetId, PetList, UpdatePet } from "../../schemas/learn-ps.ts";
import type { PetService } from "./domain.ts";

const READ = ["pets:read"];
const WRITE = ["pets:write"];

export function petRoutes(pets: PetService) {
  return new Elysia({ tags: ["pets"] } as never)
    .use(appBase)
    .post(
      "/pets",
      async ({ request, body, set }) => {
        set.status = 201;
        return pets.create(principalOf(request).tenant, body);
      },
      { body: CreatePet, response: { 201: Pet }, scopes: WRITE, detail: { summary: "Create a pet" } },
    )
    .get("/pets", ({ request, query }) => pets.list(principalOf(request).tenant, query), {
      query: ListPetsQuery,
      response: PetList,
      scopes: READ,
      detail: { summary: "List pets, filtered and paginated" },
    })
    .get("/pets/:id", ({ request, params }) => pets.get(principalOf(request).tenant, params.id), {
      params: PetId,
      response: Pet,
      scopes: READ,
      detail: { summary: "Get a pet" },
    })
    .patch("/pets/:id", ({ request, params, body }) => pets.update(principalOf(request).tenant, params.id, body), {
      params: PetId,
      body: UpdatePet,
      response: Pet,
      scopes: WRITE,
      detail: { summary: "Update a pet" },
    })
    .delete(
      "/pets/:id",
      async ({ request, params, set }) => {
        await pets.delete(principalOf(request).tenant, params.id);
        set.status = 204;
      },
      { params: PetId, response: { 204: v.undefined() }, scopes: WRITE, detail: { summary: "Delete a pet" } },
    );
}

/**
 * `GET /pets/{id}` on /service without the router: the benchmark's and most clients' hottest
 * call. Same schemas and scopes as the declaration above, which serves /browser/ and the
 * API document; test/service/template.test.ts checks both answer alike.
 */
export function petFastRoutes(pets: PetService): FastRoute[] {
  return [apiRoute("/service/api/v1/pets/:id", { params: PetId, response: Pet, scopes: READ }, (req, { id }) => pets.get(principalOf(req).tenant, id))];
}
