// An event page: the envelope (pretty and canonical bytes), its facts and client signature, and
// its receipt verified in this browser, step by step, against the pinned trust.

import { getText } from "./api.js";
import { parseTree, toValue } from "./canonical.js";
import { failure, h, show } from "./dom.js";
import { shownEvent } from "./search.js";
import { clientSignature } from "./signature.js";
import { currentTrust, listLogs } from "./trust.js";
import { verifyEvent } from "./verify.js";

export async function eventPage(hash) {
  const item = shownEvent(hash);
  if (!item) {
    show(
      h("h1", {}, "Event"),
      h("p", {}, "Open events from a search: this tab has not seen ", h("code", {}, hash), "."),
    );
    return;
  }
  const tree = parseTree(item.envelopeText);
  const envelope = toValue(tree);
  const verdict = h(
    "section",
    { id: "verification", "aria-live": "polite" },
    h("p", { class: "muted" }, "Verifying the receipt in this browser…"),
  );
  const signature = h("dd", { id: "client-signature" }, "checking…");
  show(
    h("p", {}, h("a", { href: "#/search" }, "← Back to the results")),
    h("h1", {}, "Event"),
    h(
      "div",
      { class: "grid2" },
      h(
        "div",
        { class: "card" },
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Event hash"),
          h("dd", { class: "mono", id: "event-hash" }, hash),
          h("dt", {}, "Log"),
          h("dd", { class: "mono" }, item.log),
          h("dt", {}, "Index"),
          h("dd", { class: "mono" }, item.index),
          h("dt", {}, "Received"),
          h("dd", { class: "mono" }, envelope.received_at),
          h("dt", {}, "Client signature"),
          signature,
        ),
        h("h2", {}, "Receipt"),
        verdict,
      ),
      h(
        "div",
        {},
        h("h2", {}, "Envelope"),
        h("pre", { id: "envelope-pretty" }, JSON.stringify(envelope, null, 2)),
        h(
          "h2",
          {},
          `Canonical bytes (${new TextEncoder().encode(item.envelopeText).length} bytes as served, the bytes verified)`,
        ),
        h("pre", { id: "envelope-canonical" }, item.envelopeText),
      ),
    ),
  );
  clientSignature(tree).then((s) => {
    signature.replaceChildren(
      h(
        "span",
        {
          class:
            s.status === "invalid" ? "status-failed" : s.status === "valid" ? "status-ok" : "muted",
        },
        s.status,
      ),
      ` — ${s.detail}`,
    );
  });
  try {
    const logs = await listLogs();
    const log = logs.find((l) => l.log === item.log);
    const receipt = await getText(
      `../v1/receipts/${hash}?received_at=${encodeURIComponent(envelope.received_at)}`,
      true,
    );
    const trust = await currentTrust();
    const result = await verifyEvent({
      envelopeText: item.envelopeText,
      eventHash: hash,
      receiptText: receipt,
      scheme: log?.hash_scheme ?? "rfc6962-sha256",
      trust,
    });
    verdict.replaceChildren(...verificationView(result, trust, receipt));
  } catch (exc) {
    verdict.replaceChildren(failure(exc));
  }
}

function verificationView(result, trust, receipt) {
  let banner;
  if (!result.ok)
    banner = h(
      "div",
      { class: "banner bad", id: "verdict", role: "alert" },
      `Verification FAILED: ${result.error}`,
    );
  else if (trust.served)
    banner = h(
      "div",
      { class: "banner warn", id: "verdict" },
      "Verified, but only with the key this server lists: pin the log's key (Keys) for an independent check",
    );
  else
    banner = h(
      "div",
      { class: "banner ok", id: "verdict" },
      "Verified in this browser against your pinned key",
    );
  const steps = h(
    "ol",
    { class: "steps", id: "steps" },
    result.steps.map((s) =>
      h(
        "li",
        { "data-step": s.id, "data-status": s.status },
        h(
          "span",
          { class: `status-${s.status}` },
          s.status === "ok" ? "✓ ok" : s.status === "failed" ? "✗ failed" : "– skipped",
        ),
        h("span", {}, s.title),
        h("span", { class: "detail" }, s.detail),
      ),
    ),
  );
  return [
    banner,
    steps,
    h(
      "details",
      {},
      h("summary", {}, "Receipt (c2sp.org/tlog-proof@v1)"),
      h("pre", { id: "receipt" }, receipt),
    ),
  ];
}
