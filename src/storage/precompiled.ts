/**
 * Precompiled queries for hot paths. Kysely builds and compiles a query tree on every
 * call; for a simple point read that is most of the request's cost. `precompile` compiles
 * once and then only binds new parameters; on an embedded database a precompiled SELECT
 * also skips Kysely's connection machinery (see `readDirect` in native-dialect.ts), and on
 * PostgreSQL it runs as a named prepared statement on the pool (`preparedReader` in postgres.ts).
 *
 * @example
 *   const getPet = precompile(db, (tenant: string, id: string) =>
 *     db.selectFrom("pets").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
 *   const rows = await getPet("acme", petId);
 */
import { CompiledQuery, type Compilable, type Kysely } from "kysely";
import { directReaderOf, preparedReaderOf } from "./database.ts";

export function precompile<P extends unknown[], R>(
  db: Kysely<any>,
  build: (...params: P) => Compilable<R>,
  sample: P,
): (...params: P) => Promise<R[]> {
  const compiled = build(...sample).compile();
  // The compiled parameters must be exactly the arguments, in order, each used once;
  // otherwise binding by position would put a value in the wrong place.
  const same = compiled.parameters.length === sample.length && compiled.parameters.every((p, i) => Object.is(p, sample[i]));
  if (!same) throw new Error("precompile: each argument must appear exactly once, in order, as a query parameter");
  const sql = compiled.sql;
  const viaKysely = async (params: P) => (await db.executeQuery<R>(CompiledQuery.raw(sql, params))).rows;
  const select = compiled.query.kind === "SelectQueryNode";
  // PostgreSQL: a named prepared statement on the pool (see postgres.ts).
  const prepared = select ? preparedReaderOf(db) : undefined;
  if (prepared) return (...params: P) => prepared(sql, params) as Promise<R[]>;
  const direct = select ? directReaderOf(db) : undefined;
  if (!direct) return (...params: P) => viaKysely(params);
  return async (...params: P) => (direct(sql, params) as R[] | undefined) ?? viaKysely(params);
}
