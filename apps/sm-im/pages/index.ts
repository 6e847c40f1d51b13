/** sm-im's browser client: the page, its script and styles, served under /browser. */
import { Elysia } from "elysia";
import { existsSync, readFileSync } from "node:fs";

const asset = (name: string) => readFileSync(new URL(`./${name}`, import.meta.url));
/** ML-KEM-768 for the page, bundled at install (scripts/build-pages.mjs); without it the page offers no hybrid. */
const kemBundle = new URL("./build/ml-kem.js", import.meta.url);

export function imPages() {
  const html = asset("im.html");
  const js = asset("im.js");
  const css = asset("im.css");
  const kem = existsSync(kemBundle) ? readFileSync(kemBundle) : "// ML-KEM was not bundled at install (scripts/build-pages.mjs): no post-quantum hybrid\n";
  return new Elysia({ prefix: "/browser" })
    .get("/", () => new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } }), { detail: { hide: true } })
    .get("/im.js", () => new Response(js, { headers: { "content-type": "text/javascript; charset=utf-8" } }), { detail: { hide: true } })
    .get("/ml-kem.js", () => new Response(kem, { headers: { "content-type": "text/javascript; charset=utf-8" } }), { detail: { hide: true } })
    .get("/im.css", () => new Response(css, { headers: { "content-type": "text/css; charset=utf-8" } }), { detail: { hide: true } });
}
