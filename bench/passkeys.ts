/**
 * Passkey sign-ins per second at identity-idp: a software authenticator (an ES256 key the
 * target registered) runs the whole username-less ceremony over HTTPS for each sign-in: the
 * login page (session and CSRF token), the options (challenge), the assertion signed here, and
 * the server's verification to a signed-in session. `concurrency` sign-ins run at once.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnTarget } from "./wrk.ts";

const enc = new TextEncoder();
const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

/** An ECDSA P-256 signature from WebCrypto (r||s) in the DER form WebAuthn carries. */
function derSignature(rs: Uint8Array): Uint8Array {
  const int = (x: Uint8Array) => {
    let i = 0;
    while (i < x.length - 1 && x[i] === 0) i++;
    const v = x.slice(i);
    return v[0]! & 0x80 ? Uint8Array.of(0x02, v.length + 1, 0, ...v) : Uint8Array.of(0x02, v.length, ...v);
  };
  const r = int(rs.slice(0, 32));
  const s = int(rs.slice(32));
  return Uint8Array.of(0x30, r.length + s.length, ...r, ...s);
}

export async function benchPasskeySignIns(opts: { dir: string; seconds: number; concurrency: number }): Promise<{ perSecond: number; signIns: number; failures: number }> {
  // No admin API calls: the issuer arguments only have to be well-formed.
  const ca = join(opts.dir, "no-issuer-ca.pem");
  writeFileSync(ca, "");
  const noIssuer = ["https://127.0.0.1:9/t/{tenant}", "https://127.0.0.1:9/t/{tenant}/jwks", ca];
  const target = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "identity-idp.ts"), join(opts.dir, "identity-idp"), ...noIssuer]);
  try {
    const info = target.info as { url: string; trust: string; tenant: string; credential_id: string; user_id: string; private_jwk: JsonWebKey };
    const trust = readFileSync(info.trust, "utf8");
    const key = await crypto.subtle.importKey("jwk", info.private_jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    const origin = new URL(info.url).origin;
    const rpIdHash = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(new URL(origin).hostname)));
    // Flags UP|UV, counter 0: an authenticator without a counter (the server accepts 0 then 0).
    const authData = Uint8Array.of(...rpIdHash, 0x05, 0, 0, 0, 0);
    const base = `${origin}/t/${info.tenant}`;

    async function signIn(): Promise<boolean> {
      const page = await fetch(`${base}/login`, { tls: { ca: trust } } as RequestInit);
      const cookie = page.headers.getSetCookie()[0]!.split(";")[0]!;
      const csrf = /data-csrf="([^"]+)"/.exec(await page.text())![1]!;
      const headers = { cookie, "x-csrf-token": csrf, "content-type": "application/json" };
      const options = (await (await fetch(`${base}/passkeys/login/options`, { method: "POST", headers, body: '{"purpose":"login"}', tls: { ca: trust } } as RequestInit)).json()) as { challenge: string };
      const clientData = enc.encode(JSON.stringify({ type: "webauthn.get", challenge: options.challenge, origin, crossOrigin: false }));
      const signed = new Uint8Array([...authData, ...new Uint8Array(await crypto.subtle.digest("SHA-256", clientData))]);
      const sig = derSignature(new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, signed)));
      const response = {
        id: info.credential_id,
        rawId: info.credential_id,
        type: "public-key",
        clientExtensionResults: {},
        response: { clientDataJSON: b64u(clientData), authenticatorData: b64u(authData), signature: b64u(sig), userHandle: b64u(enc.encode(info.user_id)) },
      };
      const done = await fetch(`${base}/passkeys/login`, { method: "POST", headers, body: JSON.stringify({ response }), tls: { ca: trust } } as RequestInit);
      await done.arrayBuffer();
      return done.status === 200 && done.headers.getSetCookie().some((c) => c.startsWith("__Host-idp_session="));
    }

    if (!(await signIn())) throw new Error("identity-idp: the passkey sign-in of the bench failed");
    for (let i = 0; i < 50; i++) await signIn(); // warm-up
    let signIns = 0;
    let failures = 0;
    const start = performance.now();
    const end = start + opts.seconds * 1000;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (performance.now() < end) (await signIn().catch(() => false)) ? signIns++ : failures++;
      }),
    );
    return { perSecond: signIns / ((performance.now() - start) / 1000), signIns, failures };
  } finally {
    target.proc.kill("SIGTERM");
  }
}
