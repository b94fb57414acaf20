// The console: sign-in, search, event pages, logs and pinned keys; one page of the query
// service, routed by the URL's fragment (#/search, #/event/<hash>, #/logs, #/keys). Every
// element is built with the DOM (no HTML from data), and every control is a link, button or
// form field, so the keyboard reaches all of it.

import { session } from "./api.js";
import { h, show } from "./dom.js";
import { eventPage } from "./event.js";
import { keysPage } from "./keys.js";
import { logsPage } from "./logs.js";
import { forgetEvents, searchPage } from "./search.js";

// Sign-in ------------------------------------------------------------------------------------

function signinPage(message) {
  const input = h("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "off",
    required: true,
    "aria-describedby": "token-help",
  });
  const form = h(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        session.signIn(input.value);
        location.hash = "#/search";
      },
    },
    h("label", { for: "token" }, "API token or viewer token"),
    input,
    h(
      "p",
      { id: "token-help", class: "muted" },
      "Kept in this tab's session storage only, and sent only in the Authorization header.",
    ),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
  );
  show(
    h(
      "div",
      { class: "card signin" },
      h("h1", {}, "Sign in"),
      message ? h("p", { class: "error" }, message) : null,
      form,
    ),
  );
  input.focus();
}

// A product that embeds the console in an iframe hands it a viewer token this way, so the token
// never appears in the frame's URL.
window.addEventListener("message", (e) => {
  if (e.source === window.parent && e.data?.type === "auditlog-console-token" && e.data.token) {
    session.signIn(String(e.data.token));
    route();
  }
});
// Routing ------------------------------------------------------------------------------------

export function route() {
  const [, name, arg] = (location.hash || "#/search").split("/");
  document.getElementById("signout").hidden = !session.token;
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${name}`);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  if (name === "keys") return keysPage();
  if (name === "logs") return logsPage();
  if (!session.token || name === "signin") return signinPage();
  if (name === "event") return eventPage(decodeURIComponent(arg ?? ""));
  return searchPage();
}

document.getElementById("signout").addEventListener("click", () => {
  session.signOut();
  sessionStorage.clear();
  forgetEvents();
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
window.addEventListener("error", (e) =>
  document.getElementById("main").prepend(h("p", { class: "error" }, String(e.message))),
);
route();
