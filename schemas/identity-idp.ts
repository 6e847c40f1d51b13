/** Request and response schemas of identity-idp's admin API, shared by its routes and its OpenAPI document. */
import * as v from "valibot";

const username = v.pipe(v.string(), v.trim(), v.toLowerCase(), v.regex(/^[a-z0-9][a-z0-9._@+-]{0,127}$/, "usernames are 1-128 characters: letters, digits and . _ @ + -"));
const password = v.pipe(v.string(), v.minLength(1), v.maxLength(1024));
const displayName = v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200));
const email = v.pipe(v.string(), v.trim(), v.maxLength(254), v.email());

export const UserId = v.object({ id: v.pipe(v.string(), v.uuid()) });

export const CreateUser = v.strictObject({
  username,
  /** Initial password; checked against the password rules. Omit to create a user who cannot log in yet. */
  password: v.optional(password),
  name: v.optional(displayName),
  email: v.optional(email),
  email_verified: v.optional(v.boolean(), false),
});

export const UpdateUser = v.strictObject({
  name: v.optional(v.nullable(displayName)),
  email: v.optional(v.nullable(email)),
  email_verified: v.optional(v.boolean()),
  disabled: v.optional(v.boolean()),
});

export const ResetPassword = v.strictObject({ password });

export const ListUsersQuery = v.strictObject({
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(100))),
  page_token: v.optional(v.pipe(v.string(), v.regex(/^\d{1,15}$/))),
});

export const User = v.object({
  id: v.string(),
  username: v.string(),
  name: v.nullable(v.string()),
  email: v.nullable(v.string()),
  email_verified: v.boolean(),
  disabled: v.boolean(),
  has_password: v.boolean(),
  mfa: v.object({ factors: v.array(v.object({ id: v.string(), kind: v.string(), created_at: v.number() })), recovery_codes_left: v.number() }),
  created_at: v.number(),
  updated_at: v.number(),
});

export const UserList = v.object({ items: v.array(User), next_page_token: v.nullable(v.string()) });

export const MfaPolicy = v.strictObject({ mfa: v.picklist(["optional", "required"]) });

export type CreateUserInput = v.InferOutput<typeof CreateUser>;
export type UpdateUserInput = v.InferOutput<typeof UpdateUser>;
export type UserView = v.InferOutput<typeof User>;
