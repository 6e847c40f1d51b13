// Lists pets through /browser/api/v1 with the session cookie (same origin, no token in the page).
const tbody = document.querySelector("#pets tbody");
const table = document.getElementById("pets");
const status = document.getElementById("status");
const more = document.getElementById("more");
let next = null;

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function load(reset) {
  const species = document.getElementById("species").value;
  const q = new URLSearchParams({ limit: "20" });
  if (species) q.set("species", species);
  if (!reset && next) q.set("page_token", next);
  const res = await fetch(`/browser/api/v1/pets?${q}`, { credentials: "same-origin" });
  if (res.status === 401) {
    status.textContent = "You are not signed in.";
    table.hidden = true;
    return;
  }
  if (!res.ok) {
    status.textContent = `Could not load pets (${res.status}).`;
    return;
  }
  const page = await res.json();
  if (reset) tbody.replaceChildren();
  for (const p of page.items) {
    const tr = document.createElement("tr");
    tr.append(cell(p.name), cell(p.species), cell(p.age_years ?? ""), cell(p.tags.join(", ")));
    tbody.append(tr);
  }
  next = page.next_page_token;
  more.hidden = !next;
  table.hidden = tbody.children.length === 0;
  status.textContent = tbody.children.length === 0 ? "No pets yet." : `${tbody.children.length} pets shown.`;
}

document.getElementById("filter").addEventListener("submit", (e) => {
  e.preventDefault();
  load(true);
});
more.addEventListener("click", () => load(false));

// Sign out is a plain form POST carrying the session's CSRF token, so the browser follows the
// logout through identity-authz and identity-idp and back here.
async function session() {
  const res = await fetch("/browser/api/v1/session", { credentials: "same-origin" });
  if (!res.ok) return;
  const s = await res.json();
  const form = document.getElementById("signout");
  form.elements.csrf_token.value = s.csrf_token;
  form.hidden = false;
}
session();
load(true);
