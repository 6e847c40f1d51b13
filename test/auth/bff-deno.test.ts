/** src/auth/bff.ts must load unchanged on Deno (Web-standard fetch, oauth4webapi, valibot). */
import { expect, test } from "bun:test";
import { moduleUrl, runOnDeno } from "../support/deno.ts";

test("src/auth/bff.ts imports and validates its config on Deno", async () => {
  const result = await runOnDeno(["--allow-read", "--allow-env"], () => `import * as bff from ${moduleUrl("src/auth/bff.ts")};
const c = bff.parseBrowserLoginConfig({ issuer: "https://id.example/t/acme", client_id: "web", client_secret_file: "s" });
let refused = "";
try { bff.parseBrowserLoginConfig({ issuer: "http://id.example/t/acme", client_id: "web", client_secret_file: "s" }); } catch (e) { refused = e.code; }
console.log(JSON.stringify({ scope: c.scope, alg: c.id_token_alg, refused, plugin: typeof bff.browserLogin }));
`);
  expect(result).toEqual({ scope: "openid profile", alg: "ES256", refused: "config_invalid", plugin: "function" });
}, 60_000);
