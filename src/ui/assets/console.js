// The consoles' script layer: sends `form[data-api]` to the service's /browser/api/v1 as JSON
// with the session's CSRF token, asks before destructive actions, shows the API's validation
// errors beside their fields and carries a flash message across the reload. Same origin, no
// inline code; pages work (read-only) without it.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const FLASH = "cryptoutil.flash";

  function flash(text, kind) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.className = `flash ${kind}`;
    box.textContent = text;
  }
  const saved = sessionStorage.getItem(FLASH);
  if (saved) {
    sessionStorage.removeItem(FLASH);
    try {
      const f = JSON.parse(saved);
      flash(f.text, f.kind);
    } catch {
      /* a stale value: ignore */
    }
  }

  const b64uEncode = (text) => {
    const bytes = new TextEncoder().encode(text);
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const b64uDecode = (s) => {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  };

  /** The form's fields as the API's JSON body. */
  function bodyOf(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      const type = el.dataset.type;
      let value;
      if (type === "bool") value = el.checked;
      else {
        const text = el.value.trim();
        if (text === "") {
          if (el.dataset.empty === "null") out[el.name] = null;
          if (type === "list" && el.dataset.empty !== "null" && el.form.dataset.method === "PATCH") out[el.name] = [];
          continue;
        }
        if (type === "number") value = Number(text);
        else if (type === "list") value = text.split(/[,\n]/).map((t) => t.trim()).filter(Boolean);
        else if (el.dataset.json) {
          try {
            value = JSON.parse(text);
          } catch {
            throw Object.assign(new Error("not valid JSON"), { field: el.name });
          }
        } else if (el.dataset.encode === "b64u") value = b64uEncode(el.value);
        else value = text;
      }
      out[el.name] = value;
    }
    return out;
  }

  function clearErrors(form) {
    for (const p of form.querySelectorAll("[data-error-for]")) {
      p.hidden = true;
      p.textContent = "";
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const top = form.querySelector("[data-form-error]");
    if (top) {
      top.hidden = true;
      top.textContent = "";
    }
  }

  /** The error model {error: {code, message, details: [{in, path, message}]}} beside the fields. */
  function showErrors(form, status, body) {
    const err = body?.error;
    let placed = 0;
    let first = null;
    for (const d of err?.details ?? []) {
      const name = typeof d.path === "string" ? d.path.split(/[.[]/)[0] : "";
      const p = name && form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (!p) continue;
      p.textContent = d.message;
      p.hidden = false;
      const input = form.elements.namedItem(name);
      if (input && "setAttribute" in input) {
        input.setAttribute("aria-invalid", "true");
        first ??= input;
      }
      placed++;
    }
    const top = form.querySelector("[data-form-error]");
    if (top) {
      top.textContent = err ? `${err.message} (${err.code})` : `The request failed (HTTP ${status}).`;
      top.hidden = false;
    }
    (first ?? top)?.focus?.();
    return placed;
  }

  function confirmFirst(question) {
    const dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(question));
    document.getElementById("confirm-text").textContent = question;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "cancel";
      dialog.showModal();
    });
  }

  const fill = (template, answer, encode) => template.replace(/\{(\w+)\}/g, (_, k) => (encode ? encodeURIComponent(answer?.[k] ?? "") : String(answer?.[k] ?? "")));

  async function submit(form) {
    clearErrors(form);
    const output = form.querySelector("[data-output]");
    if (output) output.textContent = "";
    if (form.dataset.confirm && !(await confirmFirst(form.dataset.confirm))) return;
    let body;
    try {
      body = bodyOf(form);
    } catch (e) {
      showErrors(form, 400, { error: { code: "bad_input", message: e.message, details: [{ path: e.field, message: e.message }] } });
      return;
    }
    const method = form.dataset.method;
    const hasBody = Object.keys(body).length > 0 || method === "POST" || method === "PUT" || method === "PATCH";
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const res = await fetch(form.dataset.api, {
        method,
        credentials: "same-origin",
        headers: hasBody ? { "content-type": "application/json", "x-csrf-token": csrf } : { "x-csrf-token": csrf },
        body: hasBody ? JSON.stringify(body) : undefined,
      });
      const answer = res.status === 204 ? null : await res.json().catch(() => null);
      if (!res.ok) {
        if (res.status === 401) {
          location.assign(`/browser/login?return_to=${encodeURIComponent(location.pathname + location.search)}`);
          return;
        }
        showErrors(form, res.status, answer);
        return;
      }
      const then = form.dataset.then;
      const message = form.dataset.flash ? fill(form.dataset.flash, answer, false) : "";
      if (then === "stay") {
        const out = output;
        if (out) {
          const field = form.dataset.result;
          let v = field ? answer?.[field] : answer;
          if (typeof v === "string" && form.dataset.decode === "b64u") v = b64uDecode(v);
          out.textContent = typeof v === "string" ? v : JSON.stringify(v, null, 2);
        }
        if (message) flash(message, "ok");
        return;
      }
      if (message) sessionStorage.setItem(FLASH, JSON.stringify({ text: message, kind: "ok" }));
      if (then === "reload" || !then) location.reload();
      else location.assign(fill(then, answer, true));
    } catch (e) {
      showErrors(form, 0, { error: { code: "network", message: `The service could not be reached: ${e.message}` } });
    } finally {
      if (button) button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    e.preventDefault();
    submit(form);
  });

  // Copy buttons: `<button data-copy="#id">` copies that element's text into a field.
  document.addEventListener("click", (e) => {
    const b = e.target instanceof Element ? e.target.closest("[data-copy-to]") : null;
    if (!b) return;
    const from = document.querySelector(b.dataset.copyFrom);
    const to = document.querySelector(b.dataset.copyTo);
    if (from && to) {
      to.value = from.textContent;
      to.focus();
    }
  });
})();
