// Building the page: elements from data without HTML (so nothing in an event can become
// markup), the main area, and how a failure is shown.

import { session, Unauthorized } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
export function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
  main.focus();
}
export function failure(exc) {
  if (exc instanceof Unauthorized) {
    session.signOut();
    location.hash = "#/signin";
    return h("p", { class: "error" }, exc.message);
  }
  return h("p", { class: "error", role: "alert" }, exc.message);
}
