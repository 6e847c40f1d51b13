/**
 * The single entry point to `@peculiar/x509` for cryptoutil.
 *
 * The library resolves its algorithm providers through tsyringe, which needs the
 * Reflect metadata API; loading the polyfill here, before the library, means no
 * caller has to remember the import order.
 */
import "reflect-metadata";

export * from "@peculiar/x509";
