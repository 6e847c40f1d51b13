/** sm-im's HTTP layer: routes, schemas, status codes. Rules live in domain.ts. */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../src/service/http.ts";
import { ContactList, ContactsQuery, CopyQuery, Device, DeviceId, DeviceList, FlattenedCopy, ListMessagesQuery, MessageId, MessageList, RegisterDevice, SendMessage } from "../../schemas/sm-im.ts";
import type { Messenger } from "./domain.ts";

const READ = ["im:read"];
const WRITE = ["im:write"];
const Sent = v.object({ id: v.string(), created_at: v.string(), expires_at: v.string(), copies: v.number() });

export function imRoutes(im: Messenger) {
  return new Elysia({ tags: ["messages"] } as never)
    .use(appBase)
    .post(
      "/devices",
      async ({ request, body, set }) => {
        set.status = 201;
        return im.registerDevice(principalOf(request), body.name, body.public_key, body.kem_public_key);
      },
      { body: RegisterDevice, response: { 201: Device }, scopes: WRITE, detail: { summary: "Register one of your devices: its public key agreement key (P-256 or X25519), and optionally an ML-KEM-768 key for the hybrid" } },
    )
    .get("/devices", ({ request }) => im.devices(principalOf(request)), { response: DeviceList, scopes: READ, detail: { summary: "Your devices" } })
    .delete(
      "/devices/:id",
      async ({ request, params, set }) => {
        await im.deleteDevice(principalOf(request), params.id);
        set.status = 204;
      },
      { params: DeviceId, response: { 204: v.undefined() }, scopes: WRITE, detail: { summary: "Remove one of your devices, and every copy of a content key wrapped for it" } },
    )
    .get("/contacts", ({ request, query }) => im.contacts(principalOf(request), query.subject), {
      query: ContactsQuery,
      response: ContactList,
      scopes: READ,
      detail: { summary: "The tenant's users who can receive messages, with their devices' public keys" },
    })
    .post(
      "/messages",
      async ({ request, body, set }) => {
        set.status = 201;
        return im.send(principalOf(request), body.to, body.jwe);
      },
      { body: SendMessage, response: { 201: Sent }, scopes: WRITE, detail: { summary: "Send a message: a General JSON JWE, its content key wrapped for each recipient device (ECDH-ES+A256KW)" } },
    )
    .get("/messages", ({ request, query }) => im.list(principalOf(request), query.box, query.limit, query.page_token), {
      query: ListMessagesQuery,
      response: MessageList,
      scopes: READ,
      detail: { summary: "Your inbox or sent box, newest first" },
    })
    .get("/messages/:id/copy", ({ request, params, query }) => im.copy(principalOf(request), params.id, query.device), {
      params: MessageId,
      query: CopyQuery,
      response: FlattenedCopy,
      scopes: READ,
      detail: { summary: "The message as a flattened JWE for one of your devices" },
    })
    .delete(
      "/messages/:id",
      async ({ request, params, set }) => {
        await im.delete(principalOf(request), params.id);
        set.status = 204;
      },
      { params: MessageId, response: { 204: v.undefined() }, scopes: WRITE, detail: { summary: "Delete a message from your boxes (the last holder's delete removes it)" } },
    );
}
