/** learn-ps's browser UI: a page listing the signed-in tenant's pets, served under /browser. */
import { Elysia } from "elysia";
import { readFileSync } from "node:fs";

const asset = (name: string) => readFileSync(new URL(`./${name}`, import.meta.url));

export function petPages() {
  const html = asset("pets.html");
  const js = asset("pets.js");
  const css = asset("pets.css");
  return new Elysia({ prefix: "/browser" })
    .get("/", () => new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } }), { detail: { hide: true } })
    .get("/pets.js", () => new Response(js, { headers: { "content-type": "text/javascript; charset=utf-8" } }), { detail: { hide: true } })
    .get("/pets.css", () => new Response(css, { headers: { "content-type": "text/css; charset=utf-8" } }), { detail: { hide: true } });
}
