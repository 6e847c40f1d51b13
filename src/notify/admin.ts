/**
 * The dead-letter list on a service's admin server (admin token required), under
 * `/admin/v1/notifications/dead-letters`:
 *
 * - `GET /?tenant=&limit=&after=`: a page, oldest first (`next` is the cursor of the next one);
 * - `GET /:id`: one dead letter: the event (type, tenant, its data: identifiers, never secret
 *   contents, which no notification carries), the channel, attempts and the last error;
 * - `POST /:id/retry`: one more attempt now over the same channel; delivered, it leaves the list;
 * - `DELETE /:id`: discard it.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { AppError } from "../service/errors.ts";
import type { Notifier } from "./notifier.ts";

const ListQuery = v.strictObject({
  tenant: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/))),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,4}$/), v.transform(Number), v.minValue(1), v.maxValue(500))),
  after: v.optional(v.pipe(v.string(), v.uuid())),
});
const IdParams = v.strictObject({ id: v.pipe(v.string(), v.uuid()) });

const missing = (id: string) => new AppError("not_found", "no dead letter of that id", { details: { id } });

export function deadLetterRoutes(notifier: Notifier, requireAdmin: (c: { request: Request }) => void) {
  return new Elysia({ prefix: "/notifications/dead-letters" })
    .get("/", ({ query }) => notifier.listDeadLetters(query), { query: ListQuery, beforeHandle: requireAdmin })
    .get(
      "/:id",
      async ({ params }) => {
        const d = await notifier.deadLetter(params.id);
        if (!d) throw missing(params.id);
        return d;
      },
      { params: IdParams, beforeHandle: requireAdmin },
    )
    .post(
      "/:id/retry",
      async ({ params }) => {
        const r = await notifier.retryDeadLetter(params.id);
        if (!r) throw missing(params.id);
        return r;
      },
      { params: IdParams, beforeHandle: requireAdmin },
    )
    .delete(
      "/:id",
      async ({ params, set }) => {
        if (!(await notifier.discardDeadLetter(params.id))) throw missing(params.id);
        set.status = 204;
      },
      { params: IdParams, beforeHandle: requireAdmin },
    );
}
