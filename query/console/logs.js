// The logs page: each log's size, checkpoint age and witnesses, and whether its checkpoint
// extends the one this browser verified last time (a consistency proof checked here, against
// the remembered checkpoint; a fork or rollback is shown as such). Needs no token: checkpoints
// and consistency proofs are public.

import { ApiError, getText } from "./api.js";
import { failure, h, show } from "./dom.js";
import { hasher, ProofError, verifyConsistency } from "./merkle.js";
import { b64decode, checkQuorum, NoteError, openCheckpoint } from "./note.js";
import { currentTrust, listLogs, seen } from "./trust.js";

function age(iso) {
  if (!iso) return "no checkpoint yet";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// {status: "ok" | "first" | "bad" | "none", text}
async function check(log, trust) {
  if (!log.size) return { status: "none", text: "nothing sealed yet" };
  hasher(log.hash_scheme);
  const note = await getText(`../v1/logs/${encodeURIComponent(log.log)}/checkpoint`);
  const opened = await openCheckpoint(note, [...trust.keys, ...(trust.policy?.logs ?? [])]);
  const cp = opened.checkpoint;
  if (cp.origin !== log.origin)
    throw new NoteError(`checkpoint of ${cp.origin}, listed as ${log.origin}`);
  let witnesses = opened.parsed.signatures
    .filter((s) => !opened.signedBy.some((b) => b.name === s.name))
    .map((s) => s.name);
  let quorum = "";
  if (trust.policy) {
    const verdict = await checkQuorum(trust.policy, opened, trust.now, trust.maxAge);
    if (!verdict.met) throw new NoteError(`witness quorum ${trust.policy.quorum} not met`);
    witnesses = [...verdict.fresh.keys()];
    quorum = ` (quorum ${trust.policy.quorum} met)`;
  }
  const prior = seen.get(cp.origin);
  let text;
  let status = "ok";
  if (!prior) {
    status = "first";
    text = `first checkpoint this browser has seen (size ${cp.size}); remembered`;
  } else {
    const old = (
      await openCheckpoint(prior.note, trust.keys.length ? trust.keys : trust.policy.logs)
    ).checkpoint;
    if (old.size > cp.size) {
      throw new ProofError(
        `ROLLBACK: this browser saw size ${old.size}, the log now shows ${cp.size}`,
      );
    }
    let proof = [];
    if (old.size !== cp.size && old.size > 0n) {
      const body = await getText(
        `../v1/proofs/consistency?log=${encodeURIComponent(log.log)}&from=${old.size}&to=${cp.size}`,
      );
      const head = body.slice(0, body.indexOf("\n\n")).split("\n");
      proof = head.slice(1).map(b64decode);
    }
    await verifyConsistency(log.hash_scheme, old.size, cp.size, old.root, cp.root, proof);
    text = `consistent with the checkpoint this browser saw ${age(new Date(prior.at).toISOString())} (size ${old.size} → ${cp.size})`;
  }
  seen.set(cp.origin, note, cp.size);
  return { status, text, witnesses: (witnesses.join(", ") || "none") + quorum };
}

export async function logsPage() {
  const body = h("tbody", {});
  const note = h("p", { class: "muted", id: "logs-trust" });
  show(
    h("h1", {}, "Logs"),
    note,
    h(
      "table",
      { id: "logs", "aria-busy": "true" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Log", "Origin", "Scheme", "Size", "Checkpoint", "Witnesses", "Consistency"].map((t) =>
            h("th", { scope: "col" }, t),
          ),
        ),
      ),
      body,
    ),
  );
  try {
    const trust = await currentTrust();
    note.textContent = trust.served
      ? "No key is pinned: checkpoints are checked with the keys this server lists, which is not an independent check (see Keys)."
      : "Checkpoints are checked with your pinned keys; the last one verified is remembered in this browser.";
    for (const log of await listLogs(true)) {
      const cells = {
        witnesses: h("td", {}, "…"),
        consistency: h("td", { class: "consistency" }, "checking…"),
      };
      body.append(
        h(
          "tr",
          { "data-log": log.log },
          h("td", { class: "mono" }, log.log),
          h("td", { class: "mono" }, log.origin),
          h("td", {}, log.hash_scheme),
          h("td", { class: "size" }, log.size),
          h("td", {}, age(log.checkpoint_at)),
          cells.witnesses,
          cells.consistency,
        ),
      );
      try {
        const r = await check(log, trust);
        cells.consistency.replaceChildren(
          h(
            "span",
            { class: r.status === "none" ? "muted" : "status-ok", "data-status": r.status },
            r.text,
          ),
        );
        cells.witnesses.textContent = r.witnesses ?? "";
      } catch (exc) {
        // One log that cannot be read or verified is shown as such; the others are still checked.
        if (!(exc instanceof NoteError || exc instanceof ProofError || exc instanceof ApiError)) {
          throw exc;
        }
        cells.consistency.replaceChildren(
          h("span", { class: "status-failed", "data-status": "bad", role: "alert" }, exc.message),
        );
        cells.witnesses.textContent = "";
      }
    }
  } catch (exc) {
    body.append(h("tr", {}, h("td", { colspan: 7 }, failure(exc))));
  } finally {
    document.getElementById("logs")?.setAttribute("aria-busy", "false");
  }
}
