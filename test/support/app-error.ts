/** Test helper: the AppError a promise rejects with (fails the test if it resolves or rejects otherwise). */
import { expect } from "bun:test";
import { AppError } from "../../src/service/errors.ts";

export async function appError(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error("expected an AppError, got a result");
}
