/** sm-kms's schema, versioned: the shared keyring's tables. A new change is a new entry; never edit an applied one. */
import { keyringMigrations } from "../../src/keyring/index.ts";

export const migrations = [...keyringMigrations(1)];
