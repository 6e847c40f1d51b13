/** identity-authz, JWT-secured authorization requests (authz-jar-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzJarSuite } from "./authz-jar-suite.ts";

authzJarSuite(EMBEDDED);
