/** sm-kms's HTTP layer: routes, schemas, scopes, status codes. Rules live in domain.ts. */
import { Elysia } from "elysia";
import { appBase, principalOf } from "../../src/service/http.ts";
import { AppError } from "../../src/service/errors.ts";
import * as S from "../../schemas/sm-kms.ts";
import { b64u, fromB64u, type KmsService } from "./domain.ts";
import { auditedRoutes } from "../../src/audit/routes.ts";
import type { AuditSender } from "../../src/audit/sender.ts";

/** The key operations sent to the audit service (reads of keys and public keys are not). */
const AUDITED: Record<string, string> = {
  "POST /keys": "key.create",
  "PATCH /keys/:id": "key.update",
  "POST /keys/:id/rotate": "key.rotate",
  "POST /keys/:id/import-params": "key.import_params",
  "POST /keys/:id/import": "key.import",
  "POST /keys/:id/disable": "key.disable",
  "POST /keys/:id/enable": "key.enable",
  "POST /keys/:id/schedule-deletion": "key.schedule_deletion",
  "POST /keys/:id/restore": "key.restore",
  "POST /keys/:id/encrypt": "key.encrypt",
  "POST /keys/:id/decrypt": "key.decrypt",
  "POST /keys/:id/rewrap": "key.rewrap",
  "POST /keys/:id/data-key": "key.data_key",
  "POST /keys/:id/sign": "key.sign",
  "POST /keys/:id/verify": "key.verify",
  "POST /keys/:id/mac": "key.mac",
  "POST /keys/:id/mac/verify": "key.mac_verify",
  "POST /keys/:id/batch/encrypt": "key.batch_encrypt",
  "POST /keys/:id/batch/decrypt": "key.batch_decrypt",
  "POST /keys/:id/batch/sign": "key.batch_sign",
  "POST /keys/:id/batch/verify": "key.batch_verify",
};

import { ADMIN, DECRYPT, ENCRYPT, MAC, PUBLIC_KEY_SCOPES, SIGN, VERIFY } from "./scopes.ts";

const tenantOf = (request: Request) => principalOf(request).tenant;

export function kmsRoutes(kms: KmsService, audit?: AuditSender) {
  const byok = () => {
    if (!kms.byok) throw new AppError("unavailable", "key import is not enabled");
    return kms.byok;
  };
  const encrypt = (t: string, id: string, b: S.EncryptInput) => kms.encrypt(t, id, fromB64u(b.plaintext), b.context, b.format, b.enc);
  const decrypt = async (t: string, id: string, b: S.DecryptInput) => {
    const r = await kms.decrypt(t, id, b.jwe, b.context);
    return { kid: r.kid, plaintext: b64u(r.plaintext) };
  };
  const sign = (t: string, id: string, b: S.SignInput) => kms.sign(t, id, fromB64u(b.payload), b.detached, b.format);
  const verify = (t: string, id: string, b: S.VerifyInput) => kms.verify(t, id, b.jws, b.payload === undefined ? undefined : fromB64u(b.payload));

  return (
    new Elysia({ tags: ["keys"] } as never)
      .use(appBase)
      .use(audit ? auditedRoutes(audit, AUDITED) : new Elysia())
      // --- elastic keys -------------------------------------------------------------------
      .post(
        "/keys",
        async ({ request, body, set }) => {
          set.status = 201;
          return kms.create(tenantOf(request), body);
        },
        { body: S.CreateKey, response: { 201: S.ElasticKey }, scopes: ADMIN, detail: { summary: "Create an elastic key" } },
      )
      .post(
        "/keys/import",
        async ({ request, body, set }) => {
          set.status = 201;
          return kms.importKey(tenantOf(request), body);
        },
        { body: S.ImportKey, response: { 201: S.ElasticKey }, scopes: ADMIN, detail: { summary: "Import a public or private JWK as version 1 of a new elastic key (import allowed)" } },
      )
      .get("/keys", ({ request, query }) => kms.list(tenantOf(request), query), {
        query: S.ListKeysQuery,
        response: S.ElasticKeyList,
        scopes: ADMIN,
        detail: { summary: "List elastic keys, filtered by purpose, status or tag, paginated" },
      })
      .get("/keys/:id", ({ request, params }) => kms.get(tenantOf(request), params.id), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Get an elastic key and its versions" },
      })
      .patch("/keys/:id", ({ request, params, body }) => kms.update(tenantOf(request), params.id, body), {
        params: S.KeyId,
        body: S.UpdateKey,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Update description, tags, rotation period, minimum decryption version" },
      })
      .post("/keys/:id/rotate", ({ request, params }) => kms.rotate(tenantOf(request), params.id), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Rotate: a new material version becomes current" },
      })
      .post(
        "/keys/:id/import-params",
        ({ request, params }) => byok().params(tenantOf(request), params.id),
        {
          params: S.KeyId,
          response: S.ImportParams,
          scopes: ADMIN,
          detail: { summary: "BYOK: a one-off RSA-OAEP-256 public key to wrap key material for this key (import must be allowed)" },
        },
      )
      .post("/keys/:id/import", ({ request, params, body }) => byok().import(tenantOf(request), params.id, body.import_token, body.wrapped_key), {
        params: S.KeyId,
        body: S.ImportWrapped,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "BYOK: import a JWK wrapped in a compact JWE (RSA-OAEP-256, A256GCM) to the import key; it becomes the current version" },
      })
      .post("/keys/:id/disable", ({ request, params }) => kms.disable(tenantOf(request), params.id), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Disable the key (every operation is refused)" },
      })
      .post("/keys/:id/enable", ({ request, params }) => kms.enable(tenantOf(request), params.id), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Enable a disabled key" },
      })
      .post("/keys/:id/schedule-deletion", ({ request, params, body }) => kms.scheduleDeletion(tenantOf(request), params.id, body.waiting_period_days), {
        params: S.KeyId,
        body: S.ScheduleDeletion,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Schedule deletion after a waiting period of 7..30 days (default 30)" },
      })
      .post("/keys/:id/restore", ({ request, params }) => kms.restore(tenantOf(request), params.id), {
        params: S.KeyId,
        response: S.ElasticKey,
        scopes: ADMIN,
        detail: { summary: "Cancel a scheduled deletion (the key comes back disabled)" },
      })
      .get(
        "/keys/:id/public-key",
        ({ request, params, query }) => {
          const p = principalOf(request);
          if (!PUBLIC_KEY_SCOPES.some((s) => p.scopes.has(s))) {
            throw new AppError("insufficient_scope", `one of these scopes is needed: ${PUBLIC_KEY_SCOPES.join(" ")}`);
          }
          return kms.publicKey(p.tenant, params.id, query.version);
        },
        { params: S.KeyId, query: S.PublicKeyQuery, response: S.PublicJwk, detail: { summary: "Export a version's public key as JWK (sign and asymmetric encrypt keys)" } },
      )
      // --- data operations ----------------------------------------------------------------
      .post("/keys/:id/encrypt", ({ request, params, body }) => encrypt(tenantOf(request), params.id, body), {
        params: S.KeyId,
        body: S.EncryptRequest,
        response: S.EncryptResult,
        scopes: ENCRYPT,
        detail: { summary: "Encrypt to a JWE (compact, or flattened JSON with format=json) under the current version; `context` is bound to it" },
      })
      .post("/keys/:id/decrypt", ({ request, params, body }) => decrypt(tenantOf(request), params.id, body), {
        params: S.KeyId,
        body: S.DecryptRequest,
        response: S.DecryptResult,
        scopes: DECRYPT,
        detail: { summary: "Decrypt a JWE (compact or flattened JSON); the version comes from its kid" },
      })
      .post("/keys/:id/rewrap", ({ request, params, body }) => kms.rewrap(tenantOf(request), params.id, body.jwe, body.context), {
        params: S.KeyId,
        body: S.DecryptRequest,
        response: S.RewrapResult,
        scopes: [...DECRYPT, ...ENCRYPT],
        detail: { summary: "Re-encrypt a JWE under the key's current version, in the same format, without returning the plaintext" },
      })
      .post("/keys/:id/data-key", ({ request, params, body }) => kms.dataKey(tenantOf(request), params.id, body), {
        params: S.KeyId,
        body: S.DataKeyRequest,
        response: S.DataKeyResult,
        scopes: ENCRYPT,
        detail: { summary: "Generate a data key: wrapped (JWE) and, unless include_plaintext is false, in plaintext" },
      })
      .post("/keys/:id/sign", ({ request, params, body }) => sign(tenantOf(request), params.id, body), {
        params: S.KeyId,
        body: S.SignRequest,
        response: S.SignResult,
        scopes: SIGN,
        detail: { summary: "Sign to a compact JWS (optionally with a detached payload)" },
      })
      .post("/keys/:id/verify", ({ request, params, body }) => verify(tenantOf(request), params.id, body), {
        params: S.KeyId,
        body: S.VerifyRequest,
        response: S.VerifyResult,
        scopes: VERIFY,
        detail: { summary: "Verify a JWS (compact or flattened JSON); the version comes from its kid; a bad signature is 400 signature_invalid" },
      })
      .post("/keys/:id/mac", ({ request, params, body }) => kms.mac(tenantOf(request), params.id, fromB64u(body.data)), {
        params: S.KeyId,
        body: S.MacRequest,
        response: S.MacResult,
        scopes: MAC,
        detail: { summary: "HMAC over data with the current version" },
      })
      .post(
        "/keys/:id/mac/verify",
        ({ request, params, body }) => kms.macVerify(tenantOf(request), params.id, fromB64u(body.data), fromB64u(body.mac), body.kid),
        { params: S.KeyId, body: S.MacVerifyRequest, response: S.VerifyResult, scopes: MAC, detail: { summary: "Verify an HMAC; a bad MAC is 400 mac_invalid" } },
      )
      .post("/random", ({ request, body }) => (principalOf(request), kms.random(body.bytes)), {
        body: S.RandomRequest,
        response: S.RandomResult,
        detail: { summary: "Random bytes (1..1024) from the platform CSPRNG" },
      })
      // --- batches --------------------------------------------------------------------------
      .post("/keys/:id/batch/encrypt", ({ request, params, body }) => kms.batch(tenantOf(request), params.id, body.items, (i) => encrypt(tenantOf(request), params.id, i)), {
        params: S.KeyId,
        body: S.BatchEncrypt,
        response: S.BatchEncryptResult,
        scopes: ENCRYPT,
        detail: { summary: "Encrypt several items; each result is a JWE or its own error" },
      })
      .post("/keys/:id/batch/decrypt", ({ request, params, body }) => kms.batch(tenantOf(request), params.id, body.items, (i) => decrypt(tenantOf(request), params.id, i)), {
        params: S.KeyId,
        body: S.BatchDecrypt,
        response: S.BatchDecryptResult,
        scopes: DECRYPT,
        detail: { summary: "Decrypt several JWEs; each result is a plaintext or its own error" },
      })
      .post("/keys/:id/batch/sign", ({ request, params, body }) => kms.batch(tenantOf(request), params.id, body.items, (i) => sign(tenantOf(request), params.id, i)), {
        params: S.KeyId,
        body: S.BatchSign,
        response: S.BatchSignResult,
        scopes: SIGN,
        detail: { summary: "Sign several payloads; each result is a JWS or its own error" },
      })
      .post("/keys/:id/batch/verify", ({ request, params, body }) => kms.batch(tenantOf(request), params.id, body.items, (i) => verify(tenantOf(request), params.id, i)), {
        params: S.KeyId,
        body: S.BatchVerify,
        response: S.BatchVerifyResult,
        scopes: VERIFY,
        detail: { summary: "Verify several JWSs; each result is valid or its own error" },
      })
  );
}
