// sm-im's browser client. This page holds the device's private key (WebCrypto, not
// extractable, kept in IndexedDB) and does all encryption and decryption; the service sees
// only ciphertext. A message is a General JSON JWE (RFC 7516): A256GCM content, its key
// wrapped with ECDH-ES+A256KW (RFC 7518 §4.6, Concat KDF) for each recipient device and for
// this user's own devices (the sent box). Opt-in hybrid (HYBRID, a private name): the
// key-wrapping key also takes an ML-KEM-768 shared secret (build/ml-kem.js, loaded before this
// script), so recorded messages stay closed to a future quantum computer as long as ML-KEM holds.
const $ = (id) => document.getElementById(id);
const API = "/browser/api/v1";
const utf8 = new TextEncoder();
const ALG = "ECDH-ES+A256KW";
const HYBRID = "ECDH-ES+ML-KEM-768+A256KW";
const kem = globalThis.SmImKem; // undefined when the bundle was not built: no hybrid then
let csrf = null;
let me = null;
let device = null; // { id, crv, privateKey, kem?: { sealKey, iv, sealed } }
let box = "inbox";
let contacts = [];

// --- encodings ---

function b64u(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function unb64u(text) {
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
const u32 = (n) => new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
const lengthPrefixed = (b) => concat(u32(b.length), b);

// --- JWE (ECDH-ES+A256KW, A256GCM) ---

const agreement = (crv) => (crv === "X25519" ? { name: "X25519" } : { name: "ECDH", namedCurve: "P-256" });
const publicMembers = (jwk) => (jwk.crv === "X25519" ? { kty: "OKP", crv: "X25519", x: jwk.x } : { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y });

/**
 * RFC 7518 §4.6.2: one round of the Concat KDF (SHA-256) gives the 256-bit key-wrapping key.
 * For the hybrid, Z is the ECDH secret then the ML-KEM-768 shared secret, and SHA-256 of the
 * ML-KEM ciphertext follows the other info (as SuppPrivInfo), binding the copy to it.
 */
async function keyWrappingKey(z, usage, alg = ALG, hybrid = null) {
  let otherInfo = concat(lengthPrefixed(utf8.encode(alg)), lengthPrefixed(new Uint8Array(0)), lengthPrefixed(new Uint8Array(0)), u32(256));
  let secret = new Uint8Array(z);
  if (hybrid) {
    secret = concat(secret, hybrid.sharedSecret);
    otherInfo = concat(otherInfo, new Uint8Array(await crypto.subtle.digest("SHA-256", hybrid.cipherText)));
  }
  const derived = new Uint8Array(await crypto.subtle.digest("SHA-256", concat(u32(1), secret, otherInfo)));
  return crypto.subtle.importKey("raw", derived, "AES-KW", false, [usage]);
}

/** Encrypts `plaintext` once and wraps its key for each device ({ id, public_key, kem_public_key }). */
async function encryptFor(devices, plaintext, hybrid) {
  const protectedHeader = b64u(utf8.encode(JSON.stringify({ enc: "A256GCM" })));
  const cek = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: utf8.encode(protectedHeader), tagLength: 128 }, cek, plaintext));
  const recipients = [];
  for (const d of devices) {
    const alg = agreement(d.public_key.crv);
    const theirs = await crypto.subtle.importKey("jwk", publicMembers(d.public_key), alg, false, []);
    const ephemeral = await crypto.subtle.generateKey(alg, true, ["deriveBits"]);
    const z = await crypto.subtle.deriveBits({ name: alg.name, public: theirs }, ephemeral.privateKey, 256);
    const encapsulated = hybrid ? kem.encapsulate(unb64u(d.kem_public_key)) : null;
    const kwk = await keyWrappingKey(z, "wrapKey", hybrid ? HYBRID : ALG, encapsulated);
    const wrapped = new Uint8Array(await crypto.subtle.wrapKey("raw", cek, kwk, "AES-KW"));
    const epk = publicMembers(await crypto.subtle.exportKey("jwk", ephemeral.publicKey));
    const header = hybrid ? { alg: HYBRID, kid: d.id, epk, ek: b64u(encapsulated.cipherText) } : { alg: ALG, kid: d.id, epk };
    recipients.push({ header, encrypted_key: b64u(wrapped) });
  }
  return { protected: protectedHeader, recipients, iv: b64u(iv), ciphertext: b64u(sealed.subarray(0, sealed.length - 16)), tag: b64u(sealed.subarray(sealed.length - 16)) };
}

/** Opens this device's flattened copy; throws when anything was altered. */
async function decryptCopy(copy) {
  // The JOSE header: the protected members and the recipient's own (disjoint, RFC 7516 §7.2.1).
  const header = { ...JSON.parse(new TextDecoder().decode(unb64u(copy.protected))), ...copy.header };
  if ((header.alg !== ALG && header.alg !== HYBRID) || header.kid !== device.id) throw new Error("not a copy for this device");
  if (header.enc !== "A256GCM") throw new Error("unexpected enc");
  const alg = agreement(header.epk.crv);
  const epk = await crypto.subtle.importKey("jwk", publicMembers(header.epk), alg, false, []);
  const z = await crypto.subtle.deriveBits({ name: alg.name, public: epk }, device.privateKey, 256);
  let hybrid = null;
  if (header.alg === HYBRID) {
    if (!kem || !device.kem) throw new Error("this device holds no ML-KEM key");
    const cipherText = unb64u(header.ek);
    hybrid = { cipherText, sharedSecret: kem.decapsulate(cipherText, await kemSecretKey(device.kem)) };
  }
  const kwk = await keyWrappingKey(z, "unwrapKey", header.alg, hybrid);
  const cek = await crypto.subtle.unwrapKey("raw", unb64u(copy.encrypted_key), kwk, "AES-KW", "AES-GCM", false, ["decrypt"]);
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: unb64u(copy.iv), additionalData: utf8.encode(copy.protected), tagLength: 128 },
    cek,
    concat(unb64u(copy.ciphertext), unb64u(copy.tag)),
  );
  return JSON.parse(new TextDecoder().decode(plain));
}

// --- the device key, kept in IndexedDB ---

// WebCrypto has no ML-KEM, so the device's ML-KEM secret key is bytes. IndexedDB keeps it
// sealed with a non-extractable AES-GCM key (stored beside it as a CryptoKey); it is opened
// only for the moment a copy is decapsulated.
async function sealKemSecret(secretKey) {
  const sealKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, sealKey, secretKey));
  secretKey.fill(0);
  return { sealKey, iv, sealed };
}
async function kemSecretKey(k) {
  return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: k.iv }, k.sealKey, k.sealed));
}

function idb() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("sm-im", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("devices", { keyPath: "owner" });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}
async function idbOp(mode, fn) {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("devices", mode);
    const req = fn(tx.objectStore("devices"));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
  });
}

async function api(method, path, body) {
  const headers = body === undefined ? {} : { "content-type": "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = csrf;
  const res = await fetch(API + path, { method, credentials: "same-origin", headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    const err = await res.json().catch(() => null);
    throw new Error(err?.error?.message ? `${err.error.message} (${res.status})` : `HTTP ${res.status}`);
  }
  return res.status === 204 ? null : res.json();
}

/** This browser's device: the stored one if the service still lists it, else a new one. */
async function ensureDevice() {
  const owner = `${me.tenant}/${me.subject}`;
  const stored = await idbOp("readonly", (s) => s.get(owner));
  const listed = await api("GET", "/devices");
  if (stored && listed.items.some((d) => d.id === stored.id)) return stored;
  const keys = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const body = { name: `Browser ${new Date().toISOString().slice(0, 10)}`, public_key: publicMembers(await crypto.subtle.exportKey("jwk", keys.publicKey)) };
  let kemRecord;
  if (kem) {
    const pair = kem.keygen();
    body.kem_public_key = b64u(pair.publicKey);
    kemRecord = await sealKemSecret(pair.secretKey);
  }
  const made = await api("POST", "/devices", body);
  const record = { owner, id: made.id, crv: "P-256", privateKey: keys.privateKey, kem: kemRecord };
  await idbOp("readwrite", (s) => s.put(record));
  return record;
}

// --- the page ---

const nameOf = (subject) => contacts.find((c) => c.subject === subject)?.name ?? subject;

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function loadContacts() {
  contacts = (await api("GET", "/contacts")).items;
  const to = $("to");
  to.replaceChildren();
  for (const c of contacts) {
    const o = document.createElement("option");
    o.value = c.subject;
    o.textContent = c.subject === me.subject ? `${c.name ?? c.subject} (you)` : (c.name ?? c.subject);
    to.append(o);
  }
}

async function loadBox() {
  $("box-caption").textContent = box === "inbox" ? "Inbox" : "Sent";
  $("show-inbox").setAttribute("aria-pressed", String(box === "inbox"));
  $("show-sent").setAttribute("aria-pressed", String(box === "sent"));
  const page = await api("GET", `/messages?box=${box}&limit=50`);
  const tbody = document.querySelector("#messages tbody");
  tbody.replaceChildren();
  for (const m of page.items) {
    const tr = document.createElement("tr");
    tr.dataset.id = m.id;
    const actions = document.createElement("td");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Open";
    open.addEventListener("click", () => read(m));
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "Delete";
    del.addEventListener("click", () => remove(m));
    actions.append(open, " ", del);
    tr.append(cell(m.from_name ?? nameOf(m.from)), cell(m.to.map(nameOf).join(", ")), cell(new Date(m.created_at).toLocaleString()), cell(`${m.size} B`), actions);
    tbody.append(tr);
  }
  $("messages").hidden = page.items.length === 0;
  $("list-status").textContent = page.items.length === 0 ? `No messages in ${box}.` : `${page.items.length} messages in ${box}.`;
}

async function read(m) {
  const reader = $("reader");
  reader.hidden = false;
  $("reader-meta").textContent = `From ${m.from_name ?? nameOf(m.from)}, ${new Date(m.created_at).toLocaleString()}`;
  $("reader-subject").textContent = "";
  $("reader-body").textContent = "";
  $("reader-attachment").replaceChildren();
  const status = $("reader-status");
  status.className = "";
  status.textContent = "Decrypting…";
  try {
    const copy = await api("GET", `/messages/${m.id}/copy?device=${encodeURIComponent(device.id)}`);
    const content = await decryptCopy(copy);
    $("reader-subject").textContent = content.subject || "(no subject)";
    $("reader-body").textContent = content.body;
    for (const a of content.attachments ?? []) {
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([unb64u(a.data)], { type: a.type || "application/octet-stream" }));
      link.download = a.name;
      link.textContent = `${a.name} (${a.size} bytes)`;
      $("reader-attachment").append(link);
    }
    status.textContent = "Decrypted on this device.";
  } catch (e) {
    status.className = "error";
    status.textContent = `This message cannot be opened on this device: ${e.message === "not a copy for this device" || /404/.test(e.message) ? "it holds no copy of it" : "it was altered or does not decrypt"}.`;
  }
}

async function remove(m) {
  if (!confirm("Delete this message from your boxes?")) return;
  try {
    await api("DELETE", `/messages/${m.id}`);
    $("reader").hidden = true;
    await loadBox();
  } catch (e) {
    $("list-status").textContent = `Could not delete: ${e.message}`;
  }
}

async function send(form) {
  const status = $("compose-status");
  status.className = "";
  try {
    const to = [...$("to").selectedOptions].map((o) => o.value);
    if (to.length === 0) throw new Error("choose at least one recipient");
    const attachments = [];
    const file = $("attachment").files[0];
    if (file) attachments.push({ name: file.name, type: file.type, size: file.size, data: b64u(new Uint8Array(await file.arrayBuffer())) });
    const content = { subject: $("subject").value, body: $("body").value, attachments };
    status.textContent = "Encrypting…";
    await loadContacts(); // the recipients' devices as of now
    const devices = contacts.filter((c) => to.includes(c.subject) || c.subject === me.subject).flatMap((c) => c.devices);
    const hybrid = $("hybrid").checked;
    if (hybrid && !kem) throw new Error("this page has no ML-KEM (the build step did not run)");
    if (hybrid && devices.some((d) => !d.kem_public_key)) throw new Error("not every device of the recipients (and yours) has an ML-KEM-768 key; send without the hybrid");
    const jwe = await encryptFor(devices, utf8.encode(JSON.stringify(content)), hybrid);
    const sent = await api("POST", "/messages", { to, jwe });
    status.textContent = `Sent, encrypted for ${sent.copies} devices${hybrid ? " (ECDH + ML-KEM-768)" : ""}.`;
    form.reset();
    if (box === "sent") await loadBox();
  } catch (e) {
    status.className = "error";
    status.textContent = `Could not send: ${e.message}.`;
  }
}

async function start() {
  const res = await fetch(`${API}/session`, { credentials: "same-origin" });
  if (res.status === 404) {
    $("who").textContent = "Sign-in is not configured for this service (browser.login).";
    return;
  }
  if (!res.ok) {
    $("signin").hidden = false;
    return;
  }
  me = await res.json();
  csrf = me.csrf_token;
  $("who").textContent = `Signed in as ${me.name ?? me.subject} (tenant ${me.tenant})`;
  const form = $("signout");
  form.elements.csrf_token.value = csrf;
  form.hidden = false;
  $("app").hidden = false;
  try {
    device = await ensureDevice();
    $("device").textContent = `This browser is device ${device.id}; its private key never leaves it.${device.kem ? " It also holds an ML-KEM-768 key for the post-quantum hybrid." : ""}`;
    $("hybrid").disabled = !kem || !device.kem;
    await loadContacts();
    await loadBox();
  } catch (e) {
    $("device").className = "error";
    $("device").textContent = `Could not set up this device: ${e.message}`;
  }
}

$("compose").addEventListener("submit", (e) => {
  e.preventDefault();
  send(e.target);
});
$("show-inbox").addEventListener("click", () => {
  box = "inbox";
  loadBox();
});
$("show-sent").addEventListener("click", () => {
  box = "sent";
  loadBox();
});
start();
