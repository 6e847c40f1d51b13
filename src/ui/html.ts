/**
 * Safe HTML building for the consoles: `html` escapes every interpolated value unless it is
 * already `Html` (the result of another `html` call or of `raw` on text the code wrote itself).
 * Arrays are joined, null/undefined/false render nothing, so templates can map and branch.
 *
 * @example
 *   html`<td>${key.name}</td>`            // key.name escaped
 *   html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>`
 */
import { escapeHtml } from "../service/html.ts";

export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type Fragment = Html | string | number | null | undefined | false | readonly Fragment[];

function render(x: Fragment): string {
  if (x === null || x === undefined || x === false) return "";
  if (x instanceof Html) return x.text;
  if (Array.isArray(x)) return x.map(render).join("");
  return escapeHtml(String(x));
}

export function html(strings: TemplateStringsArray, ...values: Fragment[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** Markup the code itself wrote (never user input). */
export const raw = (text: string): Html => new Html(text);

/** Joins fragments into one. */
export const join = (parts: readonly Fragment[]): Html => new Html(render(parts));
