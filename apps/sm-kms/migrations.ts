/** sm-kms's schema, versioned: the shared keyring's tables. A new change is a new entry; never edit an applied one. */
import { keyringMigrations } from "../../src/keyring/index.ts";
import { createImportTokenTable } from "./byok.ts";

const ring = keyringMigrations(1);
export const migrations = [...ring, { version: ring.length + 1, name: "BYOK import tokens", up: createImportTokenTable }];
