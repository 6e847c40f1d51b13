/** The row cache's own rules: copies, version checks, what it refuses to keep, and its bounds. */
import { expect, test } from "bun:test";
import { RowCache } from "../../src/storage/row-cache.ts";

const SQL = "select * from t where a = ? and b = ?";

test("hands out copies, BLOBs included, and forgets everything when the version moves", () => {
  const c = new RowCache();
  c.validate({ own: 1, other: 1 });
  const first = c.put(SQL, ["x", 1], [{ id: "x", b: new Uint8Array([1, 2]) }]) as { id: string; b: Uint8Array }[];
  first[0]!.b.fill(0);
  const hit = c.get(SQL, ["x", 1]) as { id: string; b: Uint8Array }[];
  expect(hit).toEqual([{ id: "x", b: new Uint8Array([1, 2]) }]);
  expect(hit[0]).not.toBe(first[0]);
  expect(c.get(SQL, ["x", 2])).toBeUndefined();
  c.validate({ own: 1, other: 1 });
  expect(c.get(SQL, ["x", 1])).toBeDefined();
  c.validate({ own: 2, other: 1 });
  expect(c.get(SQL, ["x", 1])).toBeUndefined();
  c.put(SQL, ["x", 1], []);
  expect(c.get(SQL, ["x", 1])).toEqual([]); // no row is an answer too
  c.validate({ own: 2, other: 5 });
  expect(c.get(SQL, ["x", 1])).toBeUndefined();
});

test("parameter keys are injective: no two parameter lists share an entry", () => {
  const c = new RowCache();
  c.validate({ own: 0, other: 0 });
  c.put(SQL, ["a:b", "c"], [{ v: 1 }]);
  c.put(SQL, ["a", "b:c"], [{ v: 2 }]);
  c.put(SQL, ["1", 1], [{ v: 3 }]);
  c.put(SQL, [1, "1"], [{ v: 4 }]);
  expect(c.get(SQL, ["a:b", "c"])).toEqual([{ v: 1 }]);
  expect(c.get(SQL, ["a", "b:c"])).toEqual([{ v: 2 }]);
  expect(c.get(SQL, ["1", 1])).toEqual([{ v: 3 }]);
  expect(c.get(SQL, [1, "1"])).toEqual([{ v: 4 }]);
});

test("keeps nothing for other parameter types, many rows or large rows; stays within its bounds", () => {
  const c = new RowCache();
  c.validate({ own: 0, other: 0 });
  for (const params of [[new Uint8Array([1])], [null], [1n], [true]]) {
    c.put(SQL, params, [{ v: 1 }]);
    expect(c.get(SQL, params)).toBeUndefined();
  }
  c.put(SQL, ["many"], Array.from({ length: 17 }, (_, i) => ({ i })));
  expect(c.get(SQL, ["many"])).toBeUndefined();
  c.put(SQL, ["big"], [{ b: new Uint8Array(70_000) }]);
  expect(c.get(SQL, ["big"])).toBeUndefined();
  // 10,000 entries at most: the next one starts the cache over.
  for (let i = 0; i < 10_000; i++) c.put(SQL, [i], [{ i }]);
  expect(c.get(SQL, [0])).toEqual([{ i: 0 }]);
  c.put(SQL, [10_000], [{ i: 10_000 }]);
  expect(c.get(SQL, [0])).toBeUndefined();
  expect(c.get(SQL, [10_000])).toEqual([{ i: 10_000 }]);
  // 32 MiB at most, counted in string lengths and BLOB sizes.
  c.clear();
  for (let i = 0; i < 600; i++) c.put(SQL, [i], [{ b: new Uint8Array(60_000) }]);
  expect(c.get(SQL, [0])).toBeUndefined();
  expect(c.get(SQL, [599])).toHaveLength(1);
});
