// Passkey buttons of the idp's pages (served same-origin as /assets/webauthn.js; no inline
// script, so the pages keep `script-src 'self'`). A button with data-passkey="register",
// "login" or "mfa" runs the WebAuthn ceremony: options from the server, the browser's
// navigator.credentials call, the result back to the server, then the page it names.
"use strict";

const b64u = {
  enc(buf) {
    const bytes = new Uint8Array(buf);
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
  dec(text) {
    const s = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  },
};

async function post(url, csrf, body) {
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((j.error && j.error.message) || "the server refused (" + r.status + ")");
  return j;
}

const descriptors = (list) => (list || []).map((c) => ({ ...c, id: b64u.dec(c.id) }));

function creationOptions(o) {
  return { ...o, challenge: b64u.dec(o.challenge), user: { ...o.user, id: b64u.dec(o.user.id) }, excludeCredentials: descriptors(o.excludeCredentials) };
}

function requestOptions(o) {
  const out = { ...o, challenge: b64u.dec(o.challenge) };
  if (o.allowCredentials) out.allowCredentials = descriptors(o.allowCredentials);
  return out;
}

/** The JSON form of a PublicKeyCredential (what toJSON() gives in newer browsers). */
function credentialJson(cred, response) {
  return {
    id: cred.id,
    rawId: b64u.enc(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: cred.getClientExtensionResults(),
    response,
  };
}

function registrationJson(cred) {
  const r = cred.response;
  return credentialJson(cred, {
    clientDataJSON: b64u.enc(r.clientDataJSON),
    attestationObject: b64u.enc(r.attestationObject),
    transports: typeof r.getTransports === "function" ? r.getTransports() : [],
  });
}

function assertionJson(cred) {
  const r = cred.response;
  return credentialJson(cred, {
    clientDataJSON: b64u.enc(r.clientDataJSON),
    authenticatorData: b64u.enc(r.authenticatorData),
    signature: b64u.enc(r.signature),
    userHandle: r.userHandle ? b64u.enc(r.userHandle) : undefined,
  });
}

async function run(button) {
  const kind = button.dataset.passkey;
  const csrf = button.dataset.csrf;
  const base = "/t/" + encodeURIComponent(button.dataset.tenant) + "/passkeys";
  const status = document.getElementById("passkey-status");
  status.textContent = "";
  button.disabled = true;
  try {
    let done;
    if (kind === "register") {
      const nameInput = document.getElementById("passkey-name");
      const name = nameInput && nameInput.value.trim() ? nameInput.value.trim() : "Passkey";
      const options = await post(base + "/register/options", csrf, { name });
      const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
      done = await post(base + "/register", csrf, { response: registrationJson(cred) });
    } else {
      const options = await post(base + "/login/options", csrf, { purpose: kind });
      const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
      done = await post(base + "/login", csrf, { response: assertionJson(cred) });
    }
    window.location.assign(done.next);
  } catch (e) {
    status.textContent = e && e.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : "Passkey problem: " + (e && e.message ? e.message : e);
    button.disabled = false;
  }
}

for (const button of document.querySelectorAll("button[data-passkey]")) {
  if (!window.PublicKeyCredential) {
    button.hidden = true;
    continue;
  }
  button.addEventListener("click", (ev) => {
    ev.preventDefault();
    run(button);
  });
}
