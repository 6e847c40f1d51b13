/**
 * Bounds on the shape of a JSON request body, checked on the raw text before anything parses
 * or validates it.
 *
 * Why: the cost of refusing a body must stay proportional to its size. A 40 KB body of nested
 * brackets, or a small body with ten thousand invalid items, made schema validation and the
 * error it builds take seconds of event-loop time. One linear scan of the text (no parsing, no
 * recursion) refuses such bodies with a 400 before any of that work starts.
 */
import { AppError } from "./errors.ts";

/** Deepest nesting of arrays and objects a request body may have. */
export const MAX_JSON_DEPTH = 64;
/** Most values (array elements plus object members, at every level) a request body may hold. */
export const MAX_JSON_ITEMS = 10_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * Throws `body_too_deep` or `body_too_complex` (400) when the JSON text nests deeper than
 * `maxDepth` or holds more than `maxItems` values; malformed text is left to the parser.
 * Counting is approximate by design (containers and separators outside strings), never low.
 */
export function checkJsonShape(text: string, maxDepth = MAX_JSON_DEPTH, maxItems = MAX_JSON_ITEMS): void {
  let depth = 0;
  let items = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) throw new AppError("body_too_deep", `the JSON body nests deeper than ${maxDepth} levels`);
      items++;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
    else if (c === COMMA) items++;
    else continue;
    if (items > maxItems) throw new AppError("body_too_complex", `the JSON body holds more than ${maxItems} values`);
  }
}

/** True for `application/json` and `application/<anything>+json`, with or without parameters. */
export function isJsonContentType(ct: string | null): boolean {
  return ct !== null && /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(ct);
}
