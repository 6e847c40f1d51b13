/** identity-authz, pairwise subject identifiers (authz-pairwise-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzPairwiseSuite } from "./authz-pairwise-suite.ts";

authzPairwiseSuite(EMBEDDED);
