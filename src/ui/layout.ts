/**
 * The page frame every console shares: the suite's consoles in a top navigation bar (from
 * `browser.consoles`; a service alone lists only itself), the service's own sections, a
 * "signed in as" menu with sign-out, a flash region and the confirmation dialog the script
 * layer opens before destructive actions. No inline script or style: the strict page CSP
 * (`script-src 'self'; style-src 'self'`) stays as it is.
 */
import { html, type Fragment, type Html } from "./html.ts";

export interface ConsoleLink {
  name: string;
  url: string;
}

export interface LayoutInput {
  /** This service's name (marks its entry in the console bar as current). */
  service: string;
  serviceTitle: string;
  consoles: readonly ConsoleLink[];
  /** The service's own sections: label and local path. */
  sections: readonly { label: string; href: string }[];
  /** The current path, to mark the current section. */
  path: string;
  title: string;
  user?: { name: string; tenant: string; csrf: string };
  body: Fragment;
  status?: number;
}

const ASSET = "/browser/ui";

export function layout(p: LayoutInput): Html {
  const current = (href: string) => (href === "/browser/" ? p.path === href : p.path === href || p.path.startsWith(href + "/"));
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${p.user ? html`<meta name="csrf-token" content="${p.user.csrf}">` : ""}
<title>${p.title} · ${p.serviceTitle}</title>
<link rel="stylesheet" href="${ASSET}/console.css">
<script src="${ASSET}/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
<nav aria-label="Consoles" class="consoles"><ul>
${p.consoles.map((c) => html`<li><a href="${c.url}"${c.name === p.service ? html` aria-current="page"` : ""}>${c.name}</a></li>`)}
</ul></nav>
${
  p.user
    ? html`<div class="user-menu" role="group" aria-label="Account"><span id="who">Signed in as <strong>${p.user.name}</strong></span> <span class="tenant">tenant <code>${p.user.tenant}</code></span>
<form method="post" action="/browser/logout"><input type="hidden" name="csrf_token" value="${p.user.csrf}"><button type="submit">Sign out</button></form></div>`
    : ""
}
</header>
${
  p.sections.length
    ? html`<nav aria-label="${p.serviceTitle}" class="sections"><ul>
${p.sections.map((s) => html`<li><a href="${s.href}"${current(s.href) ? html` aria-current="page"` : ""}>${s.label}</a></li>`)}
</ul></nav>`
    : ""
}
<main id="main" tabindex="-1">
<h1>${p.title}</h1>
<div id="flash" class="flash" role="status" aria-live="polite"></div>
${p.body}
</main>
<dialog id="confirm-dialog" aria-labelledby="confirm-title" aria-describedby="confirm-text">
<form method="dialog">
<h2 id="confirm-title">Please confirm</h2>
<p id="confirm-text"></p>
<div class="actions"><button type="submit" value="cancel" autofocus>Cancel</button> <button type="submit" value="ok" class="danger">Confirm</button></div>
</form>
</dialog>
</body>
</html>`;
}

/** A definition list of label/value pairs (a record's details). */
export function details(rows: readonly [string, Fragment][]): Html {
  return html`<dl class="details">${rows.map(([k, val]) => html`<div><dt>${k}</dt><dd>${val ?? "—"}</dd></div>`)}</dl>`;
}

/** A note that the signed-in user may look but not change, naming the scope that would allow it. */
export function readOnlyNote(scope: string): Html {
  return html`<p class="note" role="note">Read only: changing this needs the <code>${scope}</code> scope.</p>`;
}

/** A titled section. */
export function section(id: string, title: string, body: Fragment): Html {
  return html`<section aria-labelledby="${id}"><h2 id="${id}">${title}</h2>${body}</section>`;
}
