/**
 * Issue 14 (7): every 5xx leaves one error log line with its request id (and no secrets), also
 * when the failure is turned into the answer by the framework's error handler, not the pipeline.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { appBase } from "../../src/service/http.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, type TestService } from "../support/service.ts";

let issuer: TestIssuer;
let svc: TestService;

// learn-ps plus routes that fail the way a bug does: a plain Error, in a handler and in a hook.
const failing = {
  ...learnPs,
  routes: () =>
    new Elysia()
      .use(appBase)
      .get("/boom", () => {
        throw new Error("a bug in a handler");
      })
      .post("/boom-hook", () => "never", {
        beforeHandle() {
          throw new TypeError("a bug in a hook");
        },
      }),
};

beforeAll(async () => {
  issuer = await startTestIssuer();
  svc = await startTestService(failing, { issuer, overrides: (c) => (c.log.access = false) });
});
afterAll(async () => {
  await svc?.stop();
  await issuer?.stop();
});

const errorLines = (id: string) =>
  svc.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === "error" && l.request_id === id);

test("a 500 made by the framework's error handler is logged once, with its request id", async () => {
  for (const [path, method] of [["/boom", "GET"], ["/boom-hook", "POST"]] as const) {
    const token = await issuer.mint({ tenant: "tenant-a", scope: "pets:read" });
    const res = await svc.call(path, { method, headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { code: string; request_id: string } };
    expect(body.error.code).toBe("internal");
    const id = body.error.request_id;
    expect(res.headers.get("x-request-id")).toBe(id);
    const lines = errorLines(id);
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatchObject({ msg: "request failed", status: 500, code: "internal" });
    expect(JSON.stringify(lines[0])).toContain("a bug in a");
    expect(JSON.stringify(lines[0])).not.toContain(token);
  }
});

test("a 4xx is not an error line", async () => {
  const res = await svc.call("/service/api/v1/pets", { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
  const id = ((await res.json()) as { error: { request_id: string } }).error.request_id;
  expect(res.status).toBe(401);
  expect(errorLines(id).length).toBe(0);
});
