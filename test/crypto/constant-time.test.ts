import { expect, test } from "bun:test";
import { equalBytes, equalStrings } from "../../src/crypto/constant-time.ts";

test("equality of bytes and strings, whatever the lengths", () => {
  expect(equalBytes(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(true);
  expect(equalBytes(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4]))).toBe(false);
  expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false); // a zero tail is not ignored
  expect(equalBytes(new Uint8Array(), new Uint8Array())).toBe(true);
  expect(equalStrings("tökén", "tökén")).toBe(true);
  expect(equalStrings("token", "token ")).toBe(false);
  expect(equalStrings("", "x")).toBe(false);
});
