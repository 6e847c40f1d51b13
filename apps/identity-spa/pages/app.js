// identity-spa: two ways for a single-page app to call an API with the user's authority.
// BFF mode keeps every token on identity-rp's server (this page holds nothing); the
// public-client mode holds a DPoP-bound access token whose key cannot leave this browser.
const cfg = await (await fetch("/browser/config.json")).json();
const $ = (id) => document.getElementById(id);
const show = (id, value) => {
  $(id).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
};
const signedIn = (mode, yes) => {
  $(`${mode}-signin`).hidden = yes;
  $(`${mode}-call`).hidden = !yes;
  $(`${mode}-signout`).hidden = !yes;
};

// ---- BFF mode: identity-rp's session cookie, its CSRF token on unsafe calls ----
const BFF_FLAG = "identity-spa.bff";
let bffCsrf = null;

async function bffLoad() {
  if (!cfg.rp_url) {
    show("bff-status", "identity-rp is not configured.");
    $("bff-signin").hidden = true;
    return;
  }
  // Only ask after a sign-in from this tab: a signed-out visitor causes no 401.
  if (!sessionStorage.getItem(BFF_FLAG)) return;
  const res = await fetch(`${cfg.rp_url}/session`, { credentials: "include" });
  if (!res.ok) {
    sessionStorage.removeItem(BFF_FLAG);
    show("bff-status", "Signed out.");
    return;
  }
  const s = await res.json();
  bffCsrf = s.csrf_token;
  show("bff-status", `Signed in as ${s.name ?? s.subject} (through identity-rp).`);
  signedIn("bff", true);
}

$("bff-signin").addEventListener("click", () => {
  sessionStorage.setItem(BFF_FLAG, "1");
  location.assign(`${cfg.rp_url}/login?return_to=${encodeURIComponent(location.origin + "/browser/")}`);
});
$("bff-call").addEventListener("click", async () => {
  const res = await fetch(`${cfg.rp_url}/api/profile`, { credentials: "include" });
  show("bff-output", { status: res.status, body: await res.json() });
});
$("bff-signout").addEventListener("click", async () => {
  const res = await fetch(`${cfg.rp_url}/logout`, { method: "POST", credentials: "include", headers: { "x-csrf-token": bffCsrf } });
  sessionStorage.removeItem(BFF_FLAG);
  const body = res.ok ? await res.json() : {};
  signedIn("bff", false);
  show("bff-status", "Signed out.");
  if (body.logout_url) location.assign(body.logout_url);
});

// ---- Public client: authorization code + PKCE, DPoP with a non-extractable key ----
const enc = new TextEncoder();
const b64u = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64u(crypto.getRandomValues(new Uint8Array(n)));
const sha256 = async (text) => b64u(await crypto.subtle.digest("SHA-256", enc.encode(text)));
const LOGIN = "identity-spa.pub.login";
const TOKENS = "identity-spa.pub.tokens";

/** One IndexedDB request in its own transaction; CryptoKeys are stored as they are (still non-extractable). */
function keyStore(mode, op) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("identity-spa", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction("keys", mode);
      const req = op(tx.objectStore("keys"));
      tx.oncomplete = () => {
        db.close();
        resolve(req.result);
      };
      tx.onerror = () => reject(tx.error);
    };
  });
}
const loadKey = () => keyStore("readonly", (s) => s.get("dpop"));
async function newKey() {
  const key = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  await keyStore("readwrite", (s) => s.put(key, "dpop"));
  return key;
}
async function publicJwk(key) {
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", key.publicKey);
  return { kty, crv, x, y };
}
// RFC 7638: the members in lexicographic order.
const thumbprint = async (jwk) => sha256(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }));

/** A DPoP proof (RFC 9449) for one request, signed with the stored key. */
async function proof(htm, htu, accessToken, nonce) {
  const key = await loadKey();
  const header = { typ: "dpop+jwt", alg: "ES256", jwk: await publicJwk(key) };
  const claims = { htm, htu, iat: Math.floor(Date.now() / 1000), jti: random(16) };
  if (accessToken) claims.ath = await sha256(accessToken);
  if (nonce) claims.nonce = nonce;
  const input = `${b64u(enc.encode(JSON.stringify(header)))}.${b64u(enc.encode(JSON.stringify(claims)))}`;
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey, enc.encode(input));
  return `${input}.${b64u(sig)}`;
}

let metadata;
async function server() {
  metadata ??= await (await fetch(`${cfg.issuer}/.well-known/openid-configuration`)).json();
  if (metadata.issuer !== cfg.issuer) throw new Error("the discovery document names another issuer");
  return metadata;
}

/** The token request with a proof; once more with the server's nonce if it asks for one. */
async function tokenRequest(as, form) {
  let nonce;
  for (let attempt = 0; attempt < 2; attempt++) {
    const res = await fetch(as.token_endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", dpop: await proof("POST", as.token_endpoint, undefined, nonce) },
      body: new URLSearchParams(form),
    });
    const body = await res.json();
    if (res.ok) return body;
    nonce = res.headers.get("dpop-nonce");
    if (body.error !== "use_dpop_nonce" || !nonce) throw new Error(`token request refused: ${body.error}`);
  }
  throw new Error("token request refused");
}

const claimsOf = (jwt) => JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0))));

async function pubFinish(params) {
  const started = JSON.parse(sessionStorage.getItem(LOGIN) ?? "null");
  sessionStorage.removeItem(LOGIN);
  history.replaceState(null, "", location.pathname);
  const as = await server();
  if (!started || params.get("state") !== started.state) throw new Error("this sign-in was not started here");
  if (params.get("iss") !== as.issuer) throw new Error("the response names another issuer");
  if (params.get("error")) throw new Error(`sign-in refused: ${params.get("error")}`);
  const tokens = await tokenRequest(as, {
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: cfg.redirect_uri,
    code_verifier: started.verifier,
    client_id: cfg.client_id,
    resource: cfg.resource,
  });
  if (tokens.token_type?.toLowerCase() !== "dpop") throw new Error("the access token is not DPoP-bound");
  // Straight from the token endpoint over TLS: the ID token's claims are checked, not its signature (OIDC Core 3.1.3.7).
  const id = claimsOf(tokens.id_token);
  const aud = Array.isArray(id.aud) ? id.aud : [id.aud];
  if (id.iss !== as.issuer || !aud.includes(cfg.client_id) || id.nonce !== started.nonce || id.exp * 1000 < Date.now()) throw new Error("the ID token is not for this sign-in");
  sessionStorage.setItem(TOKENS, JSON.stringify({ access_token: tokens.access_token, refresh_token: tokens.refresh_token, id_token: tokens.id_token, name: id.preferred_username ?? id.name ?? id.sub }));
}

async function pubLoad() {
  if (!cfg.issuer || !cfg.api_url) {
    show("pub-status", "The public-client mode is not configured.");
    $("pub-signin").hidden = true;
    return;
  }
  const params = new URLSearchParams(location.search);
  if (params.has("state") && sessionStorage.getItem(LOGIN)) {
    try {
      await pubFinish(params);
    } catch (e) {
      show("pub-status", `Sign-in failed: ${e.message}`);
      return;
    }
  }
  const t = JSON.parse(sessionStorage.getItem(TOKENS) ?? "null");
  if (t) {
    show("pub-status", `Signed in as ${t.name} (public client, DPoP).`);
    signedIn("pub", true);
  }
}

$("pub-signin").addEventListener("click", async () => {
  const as = await server();
  const key = await newKey(); // a new key for each sign-in
  const started = { verifier: random(32), state: random(16), nonce: random(16) };
  sessionStorage.setItem(LOGIN, JSON.stringify(started));
  const u = new URL(as.authorization_endpoint);
  u.search = new URLSearchParams({
    response_type: "code",
    client_id: cfg.client_id,
    redirect_uri: cfg.redirect_uri,
    scope: cfg.scope,
    resource: cfg.resource,
    state: started.state,
    nonce: started.nonce,
    code_challenge: await sha256(started.verifier),
    code_challenge_method: "S256",
    dpop_jkt: await thumbprint(await publicJwk(key)),
  }).toString();
  location.assign(u.toString());
});
$("pub-call").addEventListener("click", async () => {
  const t = JSON.parse(sessionStorage.getItem(TOKENS));
  const url = `${cfg.api_url.replace(/\/+$/, "")}/profile`;
  const res = await fetch(url, { headers: { authorization: `DPoP ${t.access_token}`, dpop: await proof("GET", url, t.access_token) } });
  show("pub-output", { status: res.status, body: await res.json() });
});
$("pub-signout").addEventListener("click", async () => {
  const t = JSON.parse(sessionStorage.getItem(TOKENS));
  sessionStorage.removeItem(TOKENS);
  await keyStore("readwrite", (s) => s.delete("dpop"));
  signedIn("pub", false);
  show("pub-status", "Signed out.");
  show("pub-output", "");
  const as = await server();
  if (t?.refresh_token && as.revocation_endpoint) {
    await fetch(as.revocation_endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: t.refresh_token, token_type_hint: "refresh_token", client_id: cfg.client_id }),
    });
  }
  if (as.end_session_endpoint && t?.id_token) {
    const u = new URL(as.end_session_endpoint);
    u.search = new URLSearchParams({ client_id: cfg.client_id, id_token_hint: t.id_token, post_logout_redirect_uri: cfg.post_logout_redirect_uri }).toString();
    location.assign(u.toString());
  }
});

await Promise.all([bffLoad(), pubLoad()]);
document.body.dataset.ready = "true";
