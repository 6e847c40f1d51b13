/** Elysia alone over the same TLS: one route returning the same JSON, no pipeline, no database. */
import { Elysia } from "elysia";
import { throwawayTls } from "../../test/support/tls.ts";

const tlsId = await throwawayTls("elysia");
const pet = JSON.parse(process.argv[2] ?? "{}");
const app = new Elysia().get("/service/api/v1/pets/:id", () => pet);
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: tlsId.serve, fetch: (req) => app.handle(req) });
console.log(JSON.stringify({ url: `https://127.0.0.1:${server.port}`, ca: tlsId.caPem }));
