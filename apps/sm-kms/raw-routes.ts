/** sm-kms's raw operations over HTTP (`/keys/{id}/raw/*`): schemas, scopes, status codes. Rules live in raw-ops.ts. */
import { Elysia } from "elysia";
import { appBase, principalOf } from "../../src/service/http.ts";
import * as S from "../../schemas/sm-kms-raw.ts";
import { KeyId } from "../../schemas/sm-kms.ts";
import type { RawOps } from "./raw-ops.ts";

const tenantOf = (request: Request) => principalOf(request).tenant;

export function rawRoutes(raw: RawOps) {
  return new Elysia({ tags: ["raw operations"] } as never)
    .use(appBase)
    .post("/keys/:id/raw/sign", ({ request, params, body }) => raw.sign(tenantOf(request), params.id, body), {
      params: KeyId,
      body: S.RawSignRequest,
      response: S.RawSignResult,
      scopes: ["kms:sign"],
      detail: { summary: "Sign without JOSE framing: ECDSA r||s, PKCS#1 v1.5 or PSS, over a digest (ECDSA, RSA-PKCS, RSA-PSS) or over data" },
    })
    .post("/keys/:id/raw/verify", ({ request, params, body }) => raw.verify(tenantOf(request), params.id, body), {
      params: KeyId,
      body: S.RawVerifyRequest,
      response: S.RawVerifyResult,
      scopes: ["kms:verify"],
      detail: { summary: "Verify a raw signature; a bad one is 400 signature_invalid" },
    })
    .post("/keys/:id/raw/encrypt", ({ request, params, body }) => raw.encrypt(tenantOf(request), params.id, body), {
      params: KeyId,
      body: S.RawEncryptRequest,
      response: S.RawEncryptResult,
      scopes: ["kms:encrypt"],
      detail: { summary: "Encrypt without JOSE framing: AES-GCM (ciphertext||tag) with an A256GCM key, RSA-OAEP (SHA-256) with an RSA-OAEP-256 key" },
    })
    .post("/keys/:id/raw/decrypt", ({ request, params, body }) => raw.decrypt(tenantOf(request), params.id, body), {
      params: KeyId,
      body: S.RawDecryptRequest,
      response: S.RawDecryptResult,
      scopes: ["kms:decrypt"],
      detail: { summary: "Decrypt AES-GCM or RSA-OAEP ciphertext; any failure is 400 decryption_failed" },
    });
}
