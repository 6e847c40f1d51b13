/**
 * Precompiled queries for hot paths. Kysely builds and compiles a query tree on every
 * call; for a simple point read that is most of the request's cost. `precompile` compiles
 * once and then only binds new parameters; on an embedded database a precompiled SELECT
 * also skips Kysely's connection machinery (see `readDirect` in native-dialect.ts), and on
 * PostgreSQL it runs as a named prepared statement on the pool (`preparedStatements` in postgres.ts).
 * `precompileStatement` does the same for statements that also run inside transactions.
 *
 * @example
 *   const getPet = precompile(db, (tenant: string, id: string) =>
 *     db.selectFrom("pets").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
 *   const rows = await getPet("acme", petId);
 */
import { CompiledQuery, type Compilable, type Kysely, type Transaction } from "kysely";
import { directReaderOf, directStatementOf, preparedReaderOf, preparedRunnerOf } from "./database.ts";

/** The SQL of `build(...sample)`, checked to take exactly the arguments as its parameters. */
function compileChecked<P extends unknown[]>(build: (...params: P) => Compilable<unknown>, sample: P): { sql: string; select: boolean } {
  const compiled = build(...sample).compile();
  // The compiled parameters must be exactly the arguments, in order, each used once;
  // otherwise binding by position would put a value in the wrong place.
  const same = compiled.parameters.length === sample.length && compiled.parameters.every((p, i) => Object.is(p, sample[i]));
  if (!same) throw new Error("precompile: each argument must appear exactly once, in order, as a query parameter");
  return { sql: compiled.sql, select: compiled.query.kind === "SelectQueryNode" };
}

/** A precompiled read on `db` itself (outside any transaction). */
function rootReader<R>(db: Kysely<any>, sql: string, select: boolean): (params: readonly unknown[]) => Promise<R[]> {
  const viaKysely = async (params: readonly unknown[]) => (await db.executeQuery<R>(CompiledQuery.raw(sql, params as unknown[]))).rows;
  // PostgreSQL: a named prepared statement on the pool (see postgres.ts).
  const prepared = select ? preparedReaderOf(db) : undefined;
  if (prepared) return (params) => prepared(sql, params) as Promise<R[]>;
  const direct = select ? directReaderOf(db) : undefined;
  if (!direct) return viaKysely;
  return async (params) => (direct(sql, params) as R[] | undefined) ?? viaKysely(params);
}

export function precompile<P extends unknown[], R>(db: Kysely<any>, build: (...params: P) => Compilable<R>, sample: P): (...params: P) => Promise<R[]> {
  const { sql, select } = compileChecked(build, sample);
  const read = rootReader<R>(db, sql, select);
  return (...params: P) => read(params);
}

/** What a statement gives back: the rows it read, the number of rows it changed. */
export interface StatementResult<R> {
  rows: R[];
  changes: number;
}

/** Where a statement runs: the database itself, or a transaction on it whose callback is running. */
export type StatementHandle<DB> = Kysely<DB> | Transaction<DB>;

/**
 * Runs raw SQL on `on`, the database `db` or one of its transactions. Inside a transaction on
 * an embedded database the statement goes straight to the connection Kysely holds for it
 * (no query executor, no frozen CompiledQuery, no promise chain per statement), so a
 * transaction of such statements runs in one event-loop turn; elsewhere through Kysely.
 */
export function statementRunner<DB>(db: Kysely<DB>): <R>(on: StatementHandle<DB>, sql: string, params: readonly unknown[]) => Promise<StatementResult<R>> {
  const direct = directStatementOf(db);
  return async <R>(on: StatementHandle<DB>, sql: string, params: readonly unknown[]) => {
    if (direct && on.isTransaction) return direct(sql, params) as StatementResult<R>;
    return throughKysely<R>(on, sql, params);
  };
}

async function throughKysely<R>(on: StatementHandle<any>, sql: string, params: readonly unknown[]): Promise<StatementResult<R>> {
  const r = await on.executeQuery<R>(CompiledQuery.raw(sql, params as unknown[]));
  return { rows: r.rows, changes: Number(r.numAffectedRows ?? 0n) };
}

/**
 * A statement compiled once (see `precompile`) that runs on the handle it is given: on `db`
 * a SELECT takes the precompiled read path; in a transaction on an embedded database any
 * statement goes straight to the connection (see `statementRunner`).
 *
 * @example
 *   const advance = precompileStatement(db, (v: number, id: string) => db.updateTable("keys").set({ v }).where("id", "=", id), [1, "i"]);
 *   await withTransaction(db, async (trx) => {
 *     if ((await advance(trx, 2, id)).changes !== 1) throw notFound("key");
 *   });
 */
export function precompileStatement<DB, P extends unknown[]>(
  db: Kysely<DB>,
  build: (...params: P) => Compilable<unknown>,
  sample: P,
): <R>(on: StatementHandle<DB>, ...params: P) => Promise<StatementResult<R>> {
  const { sql, select } = compileChecked(build, sample);
  const run = statementRunner(db);
  const read = select ? rootReader<unknown>(db, sql, true) : undefined;
  return async <R>(on: StatementHandle<DB>, ...params: P) => {
    if (read && !on.isTransaction) return { rows: (await read(params)) as R[], changes: 0 };
    return run<R>(on, sql, params);
  };
}

/** Shapes kept per runner at most (a handful in practice; past this, each call compiles). */
const MAX_SHAPES = 256;

/**
 * Statements whose SQL depends on a shape (the columns an UPDATE sets, the rows an INSERT
 * has, the values an IN list holds): `build` makes the statement on the handle from its
 * parameter values, in the order they bind. Each shape is compiled once, with sentinel
 * values, and kept only if the compiled parameters are exactly those sentinels in that order;
 * later calls of the shape only bind (see `statementRunner`). A shape that does not compile
 * that way runs through the query builder each time.
 *
 * @example
 *   const shaped = shapedStatements(db);
 *   const cols = Object.keys(patch);
 *   await shaped(trx, `pets|${cols}`, [...Object.values(patch), id], (q, p) =>
 *     q.updateTable("pets").set(Object.fromEntries(cols.map((c, i) => [c, p[i]]))).where("id", "=", p[cols.length]));
 */
export function shapedStatements<DB>(
  db: Kysely<DB>,
): <R>(on: StatementHandle<DB>, shape: string, params: readonly unknown[], build: (q: StatementHandle<DB>, p: readonly unknown[]) => Compilable<unknown>) => Promise<StatementResult<R>> {
  const run = statementRunner(db);
  const compiled = new Map<string, string | null>();
  return async <R>(on: StatementHandle<DB>, shape: string, params: readonly unknown[], build: (q: StatementHandle<DB>, p: readonly unknown[]) => Compilable<unknown>) => {
    let sql = compiled.get(shape);
    if (sql === undefined) {
      const sentinels = params.map((_, i) => ({ sentinel: i }));
      const c = build(on, sentinels).compile();
      const exact = c.parameters.length === sentinels.length && c.parameters.every((p, i) => p === sentinels[i]);
      sql = exact ? c.sql : null;
      if (compiled.size < MAX_SHAPES) compiled.set(shape, sql);
    }
    if (sql !== null) return run<R>(on, sql, params);
    const r = await on.executeQuery<R>(build(on, params).compile());
    return { rows: r.rows, changes: Number(r.numAffectedRows ?? 0n) };
  };
}

/**
 * Runs one statement on `db` itself, outside any transaction: on PostgreSQL as a named prepared
 * statement (parsed and planned once per pooled connection), elsewhere through Kysely. Only for
 * statements of a few fixed shapes: every shape stays prepared on every pooled connection.
 */
export async function runPrepared<R>(db: Kysely<any>, sql: string, params: readonly unknown[]): Promise<StatementResult<R>> {
  const run = preparedRunnerOf(db);
  return run ? ((await run(sql, params)) as StatementResult<R>) : throughKysely<R>(db, sql, params);
}
