// The search page: the query form, the results table, paging through the stored result set and
// downloads; and the events of the page shown, which event pages read.

import { ApiError, eventsOf, pangea } from "./api.js";
import { parseTree, toValue } from "./canonical.js";
import { failure, h, show } from "./dom.js";

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

function saved() {
  const raw = events.get(SEARCH) ?? sessionStorage.getItem(SEARCH);
  return raw ? JSON.parse(raw) : null;
}

function field(label, el) {
  return h("label", {}, label, el);
}

function select(name, options, value) {
  return h(
    "select",
    { name, id: name },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}

export function searchPage() {
  const last = saved();
  const p = last?.params ?? {
    query: "",
    start: "",
    end: "",
    order: "desc",
    order_by: "received_at",
    limit: 20,
  };
  const query = h("input", {
    name: "query",
    id: "query",
    value: p.query,
    placeholder: 'actor:alice action:delete "two words"',
    size: 60,
  });
  const form = h(
    "form",
    {
      class: "search",
      onsubmit: (e) => {
        e.preventDefault();
        runSearch(form);
      },
    },
    field("Query (Pangea search grammar)", query),
    h("button", { class: "primary", type: "submit", id: "search-button" }, "Search"),
    h(
      "div",
      { class: "row" },
      field(
        "From (RFC 3339 or 7d, 2h)",
        h("input", { name: "start", id: "start", value: p.start, size: 22 }),
      ),
      field("To", h("input", { name: "end", id: "end", value: p.end, size: 22 })),
      field(
        "Order by",
        select(
          "order_by",
          [
            "received_at",
            "timestamp",
            "actor",
            "action",
            "target",
            "status",
            "source",
            "message",
          ].map((v) => [v, v]),
          p.order_by,
        ),
      ),
      field(
        "Order",
        select(
          "order",
          [
            ["desc", "newest first"],
            ["asc", "oldest first"],
          ],
          p.order,
        ),
      ),
      field(
        "Page size",
        h("input", {
          name: "limit",
          id: "limit",
          type: "number",
          min: 1,
          max: 1000,
          value: p.limit,
        }),
      ),
    ),
  );
  const results = h("section", { id: "results", "aria-live": "polite" });
  show(h("h1", {}, "Search events"), form, results);
  if (last?.id) renderResults(results, last);
  query.focus();
}

async function runSearch(form) {
  const data = new FormData(form);
  const params = Object.fromEntries(
    ["query", "start", "end", "order", "order_by"].map((k) => [k, data.get(k)]),
  );
  params.limit = Number(data.get("limit"));
  const body = {
    query: params.query || 'message:""',
    order: params.order,
    order_by: params.order_by,
    limit: params.limit,
    verbose: false,
  };
  if (params.start) body.start = params.start;
  if (params.end) body.end = params.end;
  const results = document.getElementById("results");
  results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
  try {
    const answer = await pangea("../v1/search", body);
    keep({
      params,
      id: answer.result.id,
      count: answer.result.count,
      offset: 0,
      events: eventsOf(answer),
    });
    renderResults(results, saved());
  } catch (exc) {
    results.replaceChildren(failure(exc));
  }
}

function keep(search) {
  const slim = {
    ...search,
    events: search.events.map(({ envelopeText, hash, log, index }) => ({
      envelopeText,
      hash,
      log,
      index,
    })),
  };
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
    const url = new URL(answer.result.dest_url, location.href);
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new ApiError(`not a download URL: ${answer.result.dest_url}`);
    }
    const link = h("a", { href: url.href, download: `search.${format}` });
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
  const toolbar = h(
    "div",
    { class: "toolbar" },
    h(
      "span",
      { class: "count", id: "count" },
      last.count ? `Events ${first} to ${upto} of ${last.count}` : "No events",
    ),
    h(
      "button",
      {
        type: "button",
        id: "prev",
        disabled: last.offset === 0,
        onclick: () => page(Math.max(0, last.offset - last.params.limit)),
      },
      "Previous page",
    ),
    h(
      "button",
      { type: "button", id: "next", disabled: upto >= last.count, onclick: () => page(upto) },
      "Next page",
    ),
    h(
      "button",
      { type: "button", id: "download-csv", onclick: () => download("csv") },
      "Download CSV",
    ),
    h(
      "button",
      { type: "button", id: "download-json", onclick: () => download("json") },
      "Download JSON",
    ),
  );
  const head = ["Received", "Actor", "Action", "Target", "Status", "Message", "Log / index"];
  const rows = events.map((e) => {
    const ev = e.envelope.event ?? {};
    return h(
      "tr",
      {},
      h(
        "td",
        { class: "mono" },
        h("a", { href: `#/event/${e.hash}`, class: "event-link" }, e.envelope.received_at),
      ),
      h("td", {}, ev.actor ?? ""),
      h("td", {}, ev.action ?? ""),
      h("td", {}, ev.target ?? ""),
      h("td", {}, ev.status ?? ""),
      h("td", { class: "message", title: ev.message ?? "" }, ev.message ?? ""),
      h("td", { class: "mono" }, `${e.log} / ${e.index}`),
    );
  });
  container.replaceChildren(
    toolbar,
    h(
      "table",
      { id: "events" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          head.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

// The event of the page shown with this hash ({envelopeText, hash, log, index}), or null.
export function shownEvent(hash) {
  const raw = events.get(EVENT + hash) ?? sessionStorage.getItem(EVENT + hash);
  return raw ? JSON.parse(raw) : null;
}

export function forgetEvents() {
  events.clear();
}
