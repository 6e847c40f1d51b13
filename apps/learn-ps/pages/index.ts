/**
 * learn-ps's console: the tenant's pets (filter, sort, page), add, edit and delete; the
 * example every other console copies. Reads call the same PetService as the API routes,
 * after the same scopes; changes go through /browser/api/v1 from the kit's forms.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { consolePages, type ConsolePage } from "../../../src/ui/console.ts";
import { html } from "../../../src/ui/html.ts";
import { details, readOnlyNote, section } from "../../../src/ui/layout.ts";
import { apiForm, filterForm, type Field } from "../../../src/ui/form.ts";
import { allPages, table } from "../../../src/ui/table.ts";
import { SPECIES, type PetView } from "../../../schemas/learn-ps.ts";
import type { PetService } from "../domain.ts";

const READ = "pets:read";
const WRITE = "pets:write";
const API = "/browser/api/v1/pets";

const petFields = (p?: PetView): Field[] => [
  { name: "name", label: "Name", required: true, maxlength: 100, value: p?.name },
  { name: "species", label: "Species", type: "select", options: SPECIES, value: p?.species ?? "dog" },
  { name: "age_years", label: "Age", type: "number", min: 0, max: 200, value: p?.age_years, empty: p ? "null" : "omit" },
  { name: "tags", label: "Tags", type: "list", placeholder: "friendly, small", hint: "Lowercase words, separated by commas", value: p?.tags },
  { name: "owner_note", label: "Owner note", type: "textarea", maxlength: 4096, value: p?.owner_note, empty: p ? "null" : "omit", hint: "Stored encrypted" },
];

function listPage(pets: PetService): ConsolePage {
  return {
    path: "/",
    title: "Pets",
    scopes: [READ],
    async render({ viewer, query, path }) {
      const species = SPECIES.find((s) => s === query.get("species"));
      const tag = query.get("tag")?.trim().toLowerCase() || undefined;
      const rows = await allPages((page_token) => pets.list(viewer.tenant, { limit: 100, page_token, species, tag: tag && /^[a-z0-9][a-z0-9-]{0,31}$/.test(tag) ? tag : undefined }));
      const list = table<PetView>({
        caption: "Your pets",
        path,
        query,
        rows,
        sort: { key: "name", dir: "asc" },
        empty: "No pets yet.",
        columns: [
          { key: "name", label: "Name", cell: (p) => html`<a href="/browser/pets/${p.id}">${p.name}</a>`, sort: (p) => p.name.toLowerCase() },
          { key: "species", label: "Species", cell: (p) => p.species, sort: (p) => p.species },
          { key: "age", label: "Age", cell: (p) => p.age_years ?? "", sort: (p) => p.age_years ?? -1 },
          { key: "tags", label: "Tags", cell: (p) => p.tags.join(", ") },
          { key: "added", label: "Added", cell: (p) => p.created_at.slice(0, 10), sort: (p) => p.created_at },
        ],
      });
      return {
        body: html`
${filterForm({ path, label: "Filter pets", query, fields: [
  { name: "species", label: "Show species", type: "select", options: [{ value: "", label: "all" }, ...SPECIES] },
  { name: "tag", label: "With tag", maxlength: 32 },
] })}
<div id="pets">${list}</div>
${
  viewer.can(WRITE)
    ? section("add-title", "Add a pet", apiForm({ id: "add", action: API, method: "POST", submit: "Add", fields: petFields(), flash: "Added {name}.", then: "reload" }))
    : readOnlyNote(WRITE)
}`,
      };
    },
  };
}

function petPage(pets: PetService): ConsolePage {
  return {
    path: "/pets/:id",
    title: "Pet",
    scopes: [READ],
    async render({ viewer, params }) {
      const p = await pets.get(viewer.tenant, params.id!);
      const url = `${API}/${encodeURIComponent(p.id)}`;
      return {
        title: p.name,
        body: html`
${details([
  ["Species", p.species],
  ["Age", p.age_years ?? "unknown"],
  ["Tags", p.tags.join(", ") || "none"],
  ["Owner note", p.owner_note ?? "none"],
  ["Added", p.created_at],
  ["Changed", p.updated_at],
])}
${
  viewer.can(WRITE)
    ? html`<div class="grid">
${section("edit-title", "Edit", apiForm({ id: "edit", action: url, method: "PATCH", submit: "Save", fields: petFields(p), flash: "Saved {name}.", then: "reload" }))}
${section("delete-title", "Delete", apiForm({ id: "delete", action: url, method: "DELETE", submit: "Delete this pet", confirm: `Delete ${p.name}? This cannot be undone.`, flash: `Deleted ${p.name}.`, then: "/browser/" }))}
</div>`
    : readOnlyNote(WRITE)
}
<p><a href="/browser/">All pets</a></p>`,
      };
    },
  };
}

export function petPages(ctx: ServiceContext, pets: PetService) {
  return consolePages(ctx, { title: "Pet Store", sections: [{ label: "Pets", href: "/browser/" }], pages: [listPage(pets), petPage(pets)] });
}
