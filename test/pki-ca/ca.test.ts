/** The pki-ca end-to-end suite (ca-suite.ts) on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { caSuite } from "./ca-suite.ts";

caSuite(EMBEDDED);
