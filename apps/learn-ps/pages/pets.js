// The Pet Store page: lists and adds pets through /browser/api/v1 with the session cookie
// (same origin, no token in the page; unsafe calls carry the session's CSRF token).
const $ = (id) => document.getElementById(id);
const tbody = document.querySelector("#pets tbody");
let next = null;
let csrf = null;

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

/** The API's error model: {"error": {"code", "message"}}. */
async function errorText(res) {
  const body = await res.json().catch(() => null);
  return body?.error?.message ? `${body.error.message} (${res.status})` : `HTTP ${res.status}`;
}

async function load(reset) {
  const species = $("species").value;
  const q = new URLSearchParams({ limit: "20" });
  if (species) q.set("species", species);
  if (!reset && next) q.set("page_token", next);
  const res = await fetch(`/browser/api/v1/pets?${q}`, { credentials: "same-origin" });
  if (res.status === 401) {
    $("status").textContent = "You are not signed in.";
    $("pets").hidden = true;
    return;
  }
  if (!res.ok) {
    $("status").textContent = `Could not load pets: ${await errorText(res)}.`;
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
  $("more").hidden = !next;
  $("pets").hidden = tbody.children.length === 0;
  $("status").textContent = tbody.children.length === 0 ? "No pets yet." : `${tbody.children.length} pets shown.`;
}

async function addPet(form) {
  const data = new FormData(form);
  const pet = { name: String(data.get("name")).trim(), species: String(data.get("species")) };
  const age = String(data.get("age_years") ?? "").trim();
  if (age) pet.age_years = Number(age);
  const tags = String(data.get("tags") ?? "").split(",").map((t) => t.trim().toLowerCase()).filter(Boolean);
  if (tags.length) pet.tags = tags;
  const status = $("add-status");
  const res = await fetch("/browser/api/v1/pets", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(pet),
  });
  if (!res.ok) {
    status.className = "error";
    status.textContent = `Could not add the pet: ${await errorText(res)}.`;
    return;
  }
  const made = await res.json();
  status.className = "";
  status.textContent = `Added ${made.name}.`;
  form.reset();
  await load(true);
}

$("filter").addEventListener("submit", (e) => {
  e.preventDefault();
  load(true);
});
$("add").addEventListener("submit", (e) => {
  e.preventDefault();
  addPet(e.target);
});
$("more").addEventListener("click", () => load(false));

// Signed in: who, sign out (a plain form POST with the CSRF token, so the browser follows the
// logout through identity-authz and identity-idp and back here) and the add form for users
// who may write. Signed out: the sign-in link.
async function session() {
  const res = await fetch("/browser/api/v1/session", { credentials: "same-origin" });
  if (res.status === 404) {
    $("who").textContent = "Sign-in is not configured for this service (browser.login).";
    return;
  }
  if (!res.ok) {
    $("signin").hidden = false;
    return;
  }
  const s = await res.json();
  csrf = s.csrf_token;
  $("who").textContent = `Signed in as ${s.name ?? s.subject} (tenant ${s.tenant})`;
  const form = $("signout");
  form.elements.csrf_token.value = s.csrf_token;
  form.hidden = false;
  $("add-section").hidden = !s.scopes.includes("pets:write");
}
session().then(() => load(true));
