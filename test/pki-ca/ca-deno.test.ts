/** The pki-ca end-to-end suite (ca-suite.ts: openssl verify, crl -verify, ocsp) against pki-ca started on Deno. */
import { ON_DENO } from "../support/engine.ts";
import { caSuite } from "./ca-suite.ts";

caSuite(ON_DENO);
