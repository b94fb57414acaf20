// The console: sign-in, search, event pages, logs and pinned keys; one page of the query
// service, routed by the URL's fragment (#/search, #/event/<hash>, #/logs, #/keys). Every
// element is built with the DOM (no HTML from data), and every control is a link, button or
// form field, so the keyboard reaches all of it.

import { eventsOf, getText, pangea, session, Unauthorized } from "./api.js";
import { parseTree, toValue } from "./canonical.js";
import { logsPage } from "./logs.js";
import { clientSignature } from "./signature.js";
import { currentTrust, listLogs, pins } from "./trust.js";
import { verifyEvent } from "./verify.js";

const main = document.getElementById("main");
const SEARCH = "auditlog.search";
const EVENT = "auditlog.event.";
// The events of the pages this tab was sent, by hash: what an event page shows and verifies.
// Kept in memory, and in session storage too (so a reload keeps them) while its quota allows:
// a page of large envelopes can exceed it.
const events = new Map();

function remember(key, value) {
  try {
    sessionStorage.setItem(key, JSON.stringify(value));
  } catch (exc) {
    if (exc.name !== "QuotaExceededError") throw exc;
  }
}

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

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus();
}

function failure(exc) {
  if (exc instanceof Unauthorized) {
    session.signOut();
    location.hash = "#/signin";
    return h("p", { class: "error" }, exc.message);
  }
  return h("p", { class: "error", role: "alert" }, exc.message);
}

// Sign-in ------------------------------------------------------------------------------------

function signinPage(message) {
  const input = h("input", {
    type: "password", id: "token", name: "token", autocomplete: "off", required: true,
    "aria-describedby": "token-help",
  });
  const form = h(
    "form", {
      onsubmit: (e) => {
        e.preventDefault();
        session.signIn(input.value);
        location.hash = "#/search";
      },
    },
    h("label", { for: "token" }, "API token or viewer token"), input,
    h("p", { id: "token-help", class: "muted" },
      "Kept in this tab's session storage only, and sent only in the Authorization header."),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
  );
  show(h("div", { class: "card signin" }, h("h1", {}, "Sign in"),
    message ? h("p", { class: "error" }, message) : null, form));
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

// Search -------------------------------------------------------------------------------------

function saved() {
  const raw = events.get(SEARCH) ?? sessionStorage.getItem(SEARCH);
  return raw ? JSON.parse(raw) : null;
}

function field(label, el) {
  return h("label", {}, label, el);
}

function select(name, options, value) {
  return h("select", { name, id: name },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
}

function searchPage() {
  const last = saved();
  const p = last?.params ?? { query: "", start: "", end: "", order: "desc", order_by: "received_at", limit: 20 };
  const query = h("input", { name: "query", id: "query", value: p.query, placeholder: 'actor:alice action:delete "two words"', size: 60 });
  const form = h("form", { class: "search", onsubmit: (e) => { e.preventDefault(); runSearch(form); } },
    field("Query (Pangea search grammar)", query),
    h("button", { class: "primary", type: "submit", id: "search-button" }, "Search"),
    h("div", { class: "row" },
      field("From (RFC 3339 or 7d, 2h)", h("input", { name: "start", id: "start", value: p.start, size: 22 })),
      field("To", h("input", { name: "end", id: "end", value: p.end, size: 22 })),
      field("Order by", select("order_by", ["received_at", "timestamp", "actor", "action", "target", "status", "source", "message"].map((v) => [v, v]), p.order_by)),
      field("Order", select("order", [["desc", "newest first"], ["asc", "oldest first"]], p.order)),
      field("Page size", h("input", { name: "limit", id: "limit", type: "number", min: 1, max: 1000, value: p.limit }))));
  const results = h("section", { id: "results", "aria-live": "polite" });
  show(h("h1", {}, "Search events"), form, results);
  if (last?.id) renderResults(results, last);
  query.focus();
}

async function runSearch(form) {
  const data = new FormData(form);
  const params = Object.fromEntries(["query", "start", "end", "order", "order_by"].map((k) => [k, data.get(k)]));
  params.limit = Number(data.get("limit"));
  const body = { query: params.query || 'message:""', order: params.order, order_by: params.order_by, limit: params.limit, verbose: false };
  if (params.start) body.start = params.start;
  if (params.end) body.end = params.end;
  const results = document.getElementById("results");
  results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
  try {
    const answer = await pangea("../v1/search", body);
    keep({ params, id: answer.result.id, count: answer.result.count, offset: 0, events: eventsOf(answer) });
    renderResults(results, saved());
  } catch (exc) {
    results.replaceChildren(failure(exc));
  }
}

function keep(search) {
  const slim = { ...search, events: search.events.map(({ envelopeText, hash, log, index }) => ({ envelopeText, hash, log, index })) };
  // Only the page shown is kept: memory and storage stay bounded by one page.
  for (const key of Object.keys(sessionStorage)) {
    if (key.startsWith(EVENT)) sessionStorage.removeItem(key);
  }
  for (const key of [...events.keys()]) {
    if (key.startsWith(EVENT)) events.delete(key);
  }
  events.set(SEARCH, JSON.stringify(slim));
  remember(SEARCH, slim);
  for (const e of slim.events) {
    events.set(EVENT + e.hash, JSON.stringify(e));
    remember(EVENT + e.hash, e);
  }
}

async function page(offset) {
  const last = saved();
  const results = document.getElementById("results");
  try {
    const answer = await pangea("../v1/results", { id: last.id, limit: last.params.limit, offset });
    keep({ ...last, offset, count: answer.result.count, events: eventsOf(answer) });
    renderResults(results, saved());
  } catch (exc) {
    results.replaceChildren(failure(exc));
  }
}

async function download(format) {
  const last = saved();
  try {
    const answer = await pangea("../v1/download_results", { result_id: last.id, format });
    const link = h("a", { href: answer.result.dest_url, download: `search.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (exc) {
    document.getElementById("results").prepend(failure(exc));
  }
}

function renderResults(container, last) {
  const events = last.events.map((e) => ({ ...e, envelope: toValue(parseTree(e.envelopeText)) }));
  const first = last.count ? last.offset + 1 : 0;
  const upto = last.offset + events.length;
  const toolbar = h("div", { class: "toolbar" },
    h("span", { class: "count", id: "count" }, last.count ? `Events ${first} to ${upto} of ${last.count}` : "No events"),
    h("button", { type: "button", id: "prev", disabled: last.offset === 0, onclick: () => page(Math.max(0, last.offset - last.params.limit)) }, "Previous page"),
    h("button", { type: "button", id: "next", disabled: upto >= last.count, onclick: () => page(upto) }, "Next page"),
    h("button", { type: "button", id: "download-csv", onclick: () => download("csv") }, "Download CSV"),
    h("button", { type: "button", id: "download-json", onclick: () => download("json") }, "Download JSON"));
  const head = ["Received", "Actor", "Action", "Target", "Status", "Message", "Log / index"];
  const rows = events.map((e) => {
    const ev = e.envelope.event ?? {};
    return h("tr", {},
      h("td", { class: "mono" }, h("a", { href: `#/event/${e.hash}`, class: "event-link" }, e.envelope.received_at)),
      h("td", {}, ev.actor ?? ""), h("td", {}, ev.action ?? ""), h("td", {}, ev.target ?? ""),
      h("td", {}, ev.status ?? ""), h("td", { class: "message", title: ev.message ?? "" }, ev.message ?? ""),
      h("td", { class: "mono" }, `${e.log} / ${e.index}`));
  });
  container.replaceChildren(toolbar,
    h("table", { id: "events" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)));
}

// Event --------------------------------------------------------------------------------------

async function eventPage(hash) {
  const raw = events.get(EVENT + hash) ?? sessionStorage.getItem(EVENT + hash);
  if (!raw) {
    show(h("h1", {}, "Event"), h("p", {}, "Open events from a search: this tab has not seen ", h("code", {}, hash), "."));
    return;
  }
  const item = JSON.parse(raw);
  const tree = parseTree(item.envelopeText);
  const envelope = toValue(tree);
  const verdict = h("section", { id: "verification", "aria-live": "polite" }, h("p", { class: "muted" }, "Verifying the receipt in this browser…"));
  const signature = h("dd", { id: "client-signature" }, "checking…");
  show(
    h("p", {}, h("a", { href: "#/search" }, "← Back to the results")),
    h("h1", {}, "Event"),
    h("div", { class: "grid2" },
      h("div", { class: "card" },
        h("dl", { class: "facts" },
          h("dt", {}, "Event hash"), h("dd", { class: "mono", id: "event-hash" }, hash),
          h("dt", {}, "Log"), h("dd", { class: "mono" }, item.log),
          h("dt", {}, "Index"), h("dd", { class: "mono" }, item.index),
          h("dt", {}, "Received"), h("dd", { class: "mono" }, envelope.received_at),
          h("dt", {}, "Client signature"), signature),
        h("h2", {}, "Receipt"), verdict),
      h("div", {},
        h("h2", {}, "Envelope"), h("pre", { id: "envelope-pretty" }, JSON.stringify(envelope, null, 2)),
        h("h2", {}, `Canonical bytes (${new TextEncoder().encode(item.envelopeText).length} bytes as served, the bytes verified)`),
        h("pre", { id: "envelope-canonical" }, item.envelopeText))));
  clientSignature(tree).then((s) => {
    signature.replaceChildren(h("span", { class: s.status === "invalid" ? "status-failed" : s.status === "valid" ? "status-ok" : "muted" }, s.status), ` — ${s.detail}`);
  });
  try {
    const logs = await listLogs();
    const log = logs.find((l) => l.log === item.log);
    const receipt = await getText(`../v1/receipts/${hash}?received_at=${encodeURIComponent(envelope.received_at)}`, true);
    const trust = await currentTrust();
    const result = await verifyEvent({ envelopeText: item.envelopeText, eventHash: hash, receiptText: receipt, scheme: log?.hash_scheme ?? "rfc6962-sha256", trust });
    verdict.replaceChildren(...verificationView(result, trust, receipt));
  } catch (exc) {
    verdict.replaceChildren(failure(exc));
  }
}

function verificationView(result, trust, receipt) {
  let banner;
  if (!result.ok) banner = h("div", { class: "banner bad", id: "verdict", role: "alert" }, `Verification FAILED: ${result.error}`);
  else if (trust.served) banner = h("div", { class: "banner warn", id: "verdict" }, "Verified, but only with the key this server lists: pin the log's key (Keys) for an independent check");
  else banner = h("div", { class: "banner ok", id: "verdict" }, "Verified in this browser against your pinned key");
  const steps = h("ol", { class: "steps", id: "steps" }, result.steps.map((s) => h("li", { "data-step": s.id, "data-status": s.status },
    h("span", { class: `status-${s.status}` }, s.status === "ok" ? "✓ ok" : s.status === "failed" ? "✗ failed" : "– skipped"),
    h("span", {}, s.title), h("span", { class: "detail" }, s.detail))));
  return [banner, steps, h("details", {}, h("summary", {}, "Receipt (c2sp.org/tlog-proof@v1)"), h("pre", { id: "receipt" }, receipt))];
}

// Keys ---------------------------------------------------------------------------------------

async function keysPage() {
  const keys = h("textarea", { id: "pinned-keys", rows: 5, cols: 100, spellcheck: "false" }, pins.keys);
  const policy = h("textarea", { id: "policy", rows: 6, cols: 100, spellcheck: "false" }, pins.policy);
  const maxAge = h("input", { id: "max-age", type: "number", min: "0", value: pins.maxAge });
  const status = h("p", { id: "keys-status", "aria-live": "polite" });
  const served = h("pre", { id: "served-keys" }, "…");
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try {
      pins.save(keys.value, policy.value, maxAge.value);
      await currentTrust();
      status.replaceChildren(h("span", { class: "status-ok" }, "Saved in this browser."));
    } catch (exc) {
      status.replaceChildren(failure(exc));
    }
  } },
  h("label", { for: "pinned-keys" }, "Pinned log verifier keys, one vkey a line: the deployment's key (AUDITLOG_VKEY) or each log's own. Get them from your operator, not from this page."),
  keys,
  h("label", { for: "policy" }, "Witness policy (C2SP tlog-policy, optional): receipts then need its quorum of cosignatures"),
  policy,
  h("label", { for: "max-age" }, "Maximum cosignature age in seconds (optional)"), maxAge,
  h("p", {}, h("button", { class: "primary", type: "submit" }, "Save")), status);
  show(h("h1", {}, "Pinned keys"), h("div", { class: "card" }, form),
    h("h2", {}, "Keys this server lists (not independent: a server that lies can list its own)"), served);
  try {
    served.textContent = (await listLogs(true)).map((l) => l.vkey ?? `${l.log}: no key listed`).join("\n");
  } catch (exc) {
    served.replaceWith(failure(exc));
  }
}

// Routing ------------------------------------------------------------------------------------

export function route() {
  const [, name, arg] = (location.hash || "#/search").split("/");
  document.getElementById("signout").hidden = !session.token;
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${name}`);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  if (name === "keys") return keysPage();
  if (name === "logs") return logsPage(show, h, failure);
  if (!session.token || name === "signin") return signinPage();
  if (name === "event") return eventPage(decodeURIComponent(arg ?? ""));
  return searchPage();
}

document.getElementById("signout").addEventListener("click", () => {
  session.signOut();
  sessionStorage.clear();
  events.clear();
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
window.addEventListener("error", (e) => main.prepend(h("p", { class: "error" }, String(e.message))));
route();
