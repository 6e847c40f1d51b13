/** The row cache's own rules: copies, version checks, what it refuses to keep, and its bounds. */
import { expect, test } from "bun:test";
import { RowCache } from "../../src/storage/row-cache.ts";

const SQL = "select * from t where a = ? and b = ?";

/** A cache and a read through it that reports whether the database was asked. */
function cache() {
  const c = new RowCache();
  c.validate({ own: 0, other: 0 });
  const read = (params: unknown[], rows: unknown[]) => {
    let loaded = false;
    const got = c.read(SQL, params, () => {
      loaded = true;
      return rows;
    });
    return { got, loaded };
  };
  return { c, read };
}

test("hands out copies, BLOBs included, and forgets everything when the version moves", () => {
  const { c, read } = cache();
  c.validate({ own: 1, other: 1 });
  const first = read(["x", 1], [{ id: "x", b: new Uint8Array([1, 2]) }]);
  expect(first.loaded).toBe(true);
  const row = (first.got as { id: string; b: Uint8Array }[])[0]!;
  row.b.fill(0);
  const hit = read(["x", 1], [{ id: "stale" }]);
  expect(hit).toEqual({ got: [{ id: "x", b: new Uint8Array([1, 2]) }], loaded: false });
  expect(hit.got[0]).not.toBe(row);
  expect(read(["x", 2], [{ id: "other" }])).toEqual({ got: [{ id: "other" }], loaded: true });
  c.validate({ own: 1, other: 1 });
  expect(read(["x", 1], []).loaded).toBe(false);
  c.validate({ own: 2, other: 1 });
  expect(read(["x", 1], []).loaded).toBe(true);
  expect(read(["x", 1], [{ id: "x" }])).toEqual({ got: [], loaded: false }); // no row is an answer too
  c.validate({ own: 2, other: 5 });
  expect(read(["x", 1], [{ id: "x" }])).toEqual({ got: [{ id: "x" }], loaded: true });
});

test("parameter keys are injective: no two parameter lists share an entry", () => {
  const { read } = cache();
  const lists = [["a:b", "c"], ["a", "b:c"], ["1", 1], [1, "1"], ["#1;"], [1]];
  lists.forEach((params, i) => expect(read(params, [{ v: i }]).loaded).toBe(true));
  lists.forEach((params, i) => expect(read(params, [])).toEqual({ got: [{ v: i }], loaded: false }));
});

test("keeps nothing for other parameter types, many rows or large rows; stays within its bounds", () => {
  const { c, read } = cache();
  for (const params of [[new Uint8Array([1])], [null], [1n], [true]]) {
    read(params, [{ v: 1 }]);
    expect(read(params, [{ v: 2 }])).toEqual({ got: [{ v: 2 }], loaded: true });
  }
  const many = Array.from({ length: 17 }, (_, i) => ({ i }));
  read(["many"], many);
  expect(read(["many"], []).loaded).toBe(true);
  read(["big"], [{ b: new Uint8Array(70_000) }]);
  expect(read(["big"], []).loaded).toBe(true);
  // 10,000 entries at most: the next one starts the cache over.
  c.clear();
  for (let i = 0; i < 10_000; i++) read([i], [{ i }]);
  expect(read([0], []).loaded).toBe(false);
  read([10_000], [{ i: 10_000 }]);
  expect(read([0], []).loaded).toBe(true);
  expect(read([10_000], [])).toEqual({ got: [{ i: 10_000 }], loaded: false });
  // 32 MiB at most, counted in string lengths and BLOB sizes.
  c.clear();
  for (let i = 0; i < 600; i++) read([i], [{ b: new Uint8Array(60_000) }]);
  expect(read([0], []).loaded).toBe(true);
  expect(read([599], []).loaded).toBe(false);
});
