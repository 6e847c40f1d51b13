// Entry of the constant-time crypto core: re-exports every half.
export * from "./runtime";
export * from "./sym/index";
export * from "./ec/index";
