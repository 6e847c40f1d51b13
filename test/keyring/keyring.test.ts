/** The keyring suite (keyring-suite.ts) on an in-memory database. */
import { EMBEDDED } from "../support/engine.ts";
import { keyringSuite } from "./keyring-suite.ts";

keyringSuite(EMBEDDED);
