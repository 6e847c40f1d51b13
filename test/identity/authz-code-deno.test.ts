/** identity-authz, authorization code + PKCE (authz-code-suite.ts), with the services started on Deno. */
import { ON_DENO } from "../support/engine.ts";
import { authzCodeSuite } from "./authz-code-suite.ts";

authzCodeSuite(ON_DENO);
