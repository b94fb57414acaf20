// The keys page: the log keys, witness policy and cosignature age bound the user pins, beside
// the keys this server lists (shown as not independent).

import { failure, h, show } from "./dom.js";
import { listLogs, parsePins, pins } from "./trust.js";

export async function keysPage() {
  const keys = h(
    "textarea",
    { id: "pinned-keys", rows: 5, cols: 100, spellcheck: "false" },
    pins.keys,
  );
  const policy = h(
    "textarea",
    { id: "policy", rows: 6, cols: 100, spellcheck: "false" },
    pins.policy,
  );
  const maxAge = h("input", { id: "max-age", type: "number", min: "0", value: pins.maxAge });
  const status = h("p", { id: "keys-status", "aria-live": "polite" });
  const served = h("pre", { id: "served-keys" }, "…");
  const form = h(
    "form",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          // Nothing unreadable is kept: parse first, then save.
          await parsePins(keys.value, policy.value);
          if (maxAge.value && !(Number(maxAge.value) >= 0))
            throw new Error("not an age in seconds");
          pins.save(keys.value, policy.value, maxAge.value);
          status.replaceChildren(h("span", { class: "status-ok" }, "Saved in this browser."));
        } catch (exc) {
          status.replaceChildren(failure(exc));
        }
      },
    },
    h(
      "label",
      { for: "pinned-keys" },
      "Pinned log verifier keys, one vkey a line: the deployment's key (AUDITLOG_VKEY) or each log's own. Get them from your operator, not from this page.",
    ),
    keys,
    h(
      "label",
      { for: "policy" },
      "Witness policy (C2SP tlog-policy, optional): receipts then need its quorum of cosignatures",
    ),
    policy,
    h("label", { for: "max-age" }, "Maximum cosignature age in seconds (optional)"),
    maxAge,
    h("p", {}, h("button", { class: "primary", type: "submit", id: "save-keys" }, "Save")),
    status,
  );
  show(
    h("h1", {}, "Pinned keys"),
    h("div", { class: "card" }, form),
    h("h2", {}, "Keys this server lists (not independent: a server that lies can list its own)"),
    served,
  );
  try {
    served.textContent = (await listLogs(true))
      .map((l) => l.vkey ?? `${l.log}: no key listed`)
      .join("\n");
  } catch (exc) {
    served.replaceWith(failure(exc));
  }
}
