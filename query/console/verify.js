// Receipt verification in the browser: the same checks as `auditlog verify receipt`
// (auditlog/core/receipt.py), step by step, so the event page can show each one.
//
// Trust comes only from what the caller passes: the log keys the user pinned (or, labelled as
// not independent, the keys the server lists), an optional tlog-policy for witnesses, and an
// optional origin. The server supplies the envelope bytes, the receipt and nothing else.

import { canonicalOf, JsonError } from "./canonical.js";
import { hex, leafHash, ProofError, sha256, verifyInclusion } from "./merkle.js";
import { b64decode, checkQuorum, keyCoversOrigin, NoteError, openCheckpoint } from "./note.js";

export const RECEIPT_HEADER = "c2sp.org/tlog-proof@v1";

export function parseReceipt(text) {
  const split = text.indexOf("\n\n");
  if (split < 0) throw new NoteError("the receipt has no checkpoint after a blank line");
  const lines = text.slice(0, split).split("\n");
  const checkpoint = text.slice(split + 2);
  if (lines[0] !== RECEIPT_HEADER) throw new NoteError(`a receipt starts with ${RECEIPT_HEADER}`);
  let pos = 1;
  if (lines[pos]?.startsWith("extra ")) {
    b64decode(lines[pos].slice(6));
    pos += 1;
  }
  const m = /^index (0|[1-9]\d*)$/.exec(lines[pos] ?? "");
  if (!m) throw new NoteError("the receipt has no valid 'index' line");
  const proof = lines.slice(pos + 1).map(b64decode);
  if (!checkpoint.endsWith("\n")) throw new NoteError("the checkpoint is not a whole note");
  return { index: BigInt(m[1]), proof, checkpoint };
}

// id, what a passed step says, what a failed one means.
const STEPS = [
  [
    "envelope",
    "Envelope is canonical JSON and hashes to the event hash",
    "the envelope is not what its hash says",
  ],
  [
    "signature",
    "Checkpoint signed by a pinned log key",
    "the checkpoint is not signed by a pinned key",
  ],
  ["origin", "Checkpoint is of the expected log", "the checkpoint is of another log"],
  ["leaf", "Leaf hash computed from the envelope", "no leaf hash can be computed"],
  ["inclusion", "Inclusion proof leads to the signed root", "the event is not in the signed log"],
  ["witnesses", "Witness cosignatures meet the pinned policy", "the witness quorum is not met"],
];

// Every step's outcome: {ok, steps: [{id, title, status: "ok" | "failed" | "skipped", detail}],
// checkpoint, index, leaf}. `trust`: {keys: [log keys], served: bool (the keys came from the
// server), policy?, origin?, now (seconds), maxAge?}.
export async function verifyEvent({ envelopeText, eventHash, receiptText, scheme, trust }) {
  const steps = STEPS.map(([id, title, meaning]) => ({
    id,
    title,
    meaning,
    status: "skipped",
    detail: "",
  }));
  const result = { ok: false, steps };
  const step = (id) => steps.find((s) => s.id === id);
  let current = "envelope";
  try {
    const bytes = new TextEncoder().encode(envelopeText);
    if (canonicalOf(envelopeText) !== envelopeText) {
      throw new JsonError("the envelope is not in canonical form");
    }
    const digest = hex(await sha256(bytes));
    if (eventHash !== undefined && digest !== eventHash) {
      throw new ProofError(`the envelope hashes to ${digest}, the listed hash is ${eventHash}`);
    }
    ok(step("envelope"), `sha256 ${digest}`);

    current = "signature";
    const receipt = parseReceipt(receiptText);
    const keys = [...trust.keys, ...(trust.policy?.logs ?? [])];
    if (!keys.length) throw new NoteError("no log key is pinned");
    const opened = await openCheckpoint(receipt.checkpoint, keys);
    const cp = opened.checkpoint;
    const pinnedByUser = opened.signedBy.filter((s) => trust.keys.includes(s.key));
    const byPolicy = opened.signedBy.filter(
      (s) => !trust.keys.includes(s.key) && keyCoversOrigin(s.name, cp.origin),
    );
    if (!pinnedByUser.length && !byPolicy.length) {
      throw new NoteError("only policy keys whose name does not cover the origin signed it");
    }
    const names = [...pinnedByUser, ...byPolicy].map((s) => s.name).join(", ");
    ok(
      step("signature"),
      trust.served
        ? `signed by ${names}, a key served by this same server: NOT an independent check`
        : `signed by ${names}`,
    );
    result.independent = !trust.served;

    current = "origin";
    if (trust.origin && cp.origin !== trust.origin) {
      throw new NoteError(`the checkpoint is for ${cp.origin}, expected ${trust.origin}`);
    }
    ok(step("origin"), `${cp.origin}, size ${cp.size}`);

    current = "leaf";
    const leaf = await leafHash(scheme, new TextEncoder().encode(envelopeText));
    ok(step("leaf"), `${scheme} leaf ${hex(leaf)}`);

    current = "inclusion";
    await verifyInclusion(scheme, receipt.index, cp.size, leaf, receipt.proof, cp.root);
    ok(step("inclusion"), `index ${receipt.index} of ${cp.size}, root ${hex(cp.root)}`);
    Object.assign(result, { checkpoint: cp, index: receipt.index, leaf });

    current = "witnesses";
    if (trust.policy) {
      const verdict = await checkQuorum(trust.policy, opened, trust.now, trust.maxAge);
      const have = [...verdict.fresh.keys()].join(", ") || "none";
      const stale = [...verdict.stale].map(([n, why]) => `${n} ${why}`).join("; ");
      if (!verdict.met) {
        throw new NoteError(
          `quorum ${trust.policy.quorum} not met (valid: ${have}${stale ? `; stale: ${stale}` : ""})`,
        );
      }
      ok(step("witnesses"), `quorum ${trust.policy.quorum} met by ${have}`);
    } else {
      step("witnesses").detail = "no policy pinned";
    }
    result.ok = true;
  } catch (exc) {
    if (!(exc instanceof NoteError || exc instanceof ProofError || exc instanceof JsonError)) {
      throw exc;
    }
    const failed = step(current);
    failed.status = "failed";
    failed.detail = exc.message;
    result.error = `${failed.meaning} (${exc.message})`;
  }
  return result;
}

function ok(s, detail) {
  s.status = "ok";
  s.detail = detail;
}
