/**
 * The Yubico validation protocol 2.0 (`GET /wsapi/2.0/verify`), so other applications can check
 * YubiKey OTPs against the keys imported here. Answers are the protocol's own: `text/plain`
 * lines `key=value` with `status` (OK, BAD_OTP, REPLAYED_OTP, BAD_SIGNATURE, NO_SUCH_CLIENT,
 * MISSING_PARAMETER) and `h`, the HMAC-SHA1 of the sorted other lines under the client's key.
 *
 * Requests must be signed (`h`): an unsigned request would let anyone probe OTPs.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { equalStrings } from "../../../src/crypto/constant-time.ts";
import type { YubiKeys } from "../domain/yubikeys.ts";

const param = v.optional(v.pipe(v.string(), v.maxLength(256)));
const VerifyQuery = v.object({ id: param, otp: param, nonce: param, h: param, timestamp: param, sl: param, timeout: param });

/** The protocol's signature: HMAC-SHA1 over `k=v` pairs sorted by key and joined with `&`, base64. */
export async function wsapiSignature(key: Uint8Array, pairs: Record<string, string>): Promise<string> {
  const text = Object.keys(pairs)
    .filter((k) => k !== "h")
    .sort()
    .map((k) => `${k}=${pairs[k]}`)
    .join("&");
  const k = await crypto.subtle.importKey("raw", key as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  return Buffer.from(await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(text))).toString("base64");
}

/** `t` as the reference server writes it: UTC seconds, then `Z0` and milliseconds. */
const stamp = (d: Date) => d.toISOString().slice(0, 19) + "Z0" + String(d.getUTCMilliseconds()).padStart(3, "0");

export function wsapiRoutes(yubikeys: YubiKeys) {
  return new Elysia({ name: "identity-idp.wsapi" }).get(
    "/wsapi/2.0/verify",
    async ({ query, request }) => {
      const q = Object.fromEntries(Object.entries(query).filter(([, x]) => x !== undefined)) as Record<string, string>;
      const answer = async (fields: Record<string, string>, key?: Uint8Array) => {
        const out: Record<string, string> = { t: stamp(new Date()), ...fields };
        if (key) out.h = await wsapiSignature(key, out);
        const body = Object.entries(out)
          .sort(([a], [b]) => (a === "h" ? -1 : b === "h" ? 1 : 0))
          .map(([k, x]) => `${k}=${x}\r\n`)
          .join("");
        return new Response(body + "\r\n", { headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
      };
      const echo = { ...(q.otp !== undefined ? { otp: q.otp } : {}), ...(q.nonce !== undefined ? { nonce: q.nonce } : {}) };
      if (!q.id || !/^[1-9][0-9]{0,9}$/.test(q.id) || !q.otp || !q.nonce || !/^[A-Za-z0-9]{16,40}$/.test(q.nonce) || !q.h) {
        return answer({ ...echo, status: "MISSING_PARAMETER" });
      }
      const client = await yubikeys.client(Number(q.id));
      if (!client) return answer({ ...echo, status: "NO_SUCH_CLIENT" });
      try {
        // Signed over every parameter sent, those this server does not use included.
        const signed = Object.fromEntries(new URL(request.url).searchParams);
        if (!equalStrings(await wsapiSignature(client.key, signed), q.h)) return answer({ ...echo, status: "BAD_SIGNATURE" }, client.key);
        const r = await yubikeys.verify(client.tenant, q.otp);
        const extra: Record<string, string> = {};
        if (q.timestamp === "1" && r.token && r.status === "OK") {
          extra.timestamp = String(r.token.timestamp);
          extra.sessioncounter = String(r.token.sessionCounter);
          extra.sessionuse = String(r.token.useCounter);
        }
        if (r.status === "OK" && q.sl !== undefined) extra.sl = "100";
        return await answer({ ...echo, ...extra, status: r.status }, client.key);
      } finally {
        client.key.fill(0);
      }
    },
    { query: VerifyQuery, detail: { summary: "Yubico validation protocol 2.0: verify a YubiKey OTP", tags: ["yubico"] } },
  );
}
