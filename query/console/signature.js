// Client signatures as Pangea's SDKs make them (auditlog/core/client_signature.py): Ed25519
// over the canonical JSON of the event object; `public_key` is a JSON string
// {"algorithm": "ED25519", "key": "<SPKI PEM>"} or, in the legacy form, the key itself (PEM,
// OpenSSH, or base64 whose last 32 bytes are the raw key). The server checked it at ingest;
// the browser checks it again.

import { canonicalBytes, member } from "./canonical.js";

function base64Bytes(text) {
  return Uint8Array.from(atob(text.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

function rawKey(publicKey) {
  let text = publicKey;
  try {
    const parsed = JSON.parse(publicKey);
    if (parsed && typeof parsed === "object") {
      if ((parsed.algorithm ?? "ED25519") !== "ED25519") {
        throw new Error(`unsupported algorithm ${parsed.algorithm}`);
      }
      text = String(parsed.key ?? "");
    }
  } catch (exc) {
    if (!(exc instanceof SyntaxError)) throw exc;
  }
  if (text.startsWith("----")) {
    return base64Bytes(text.replace(/-----[^-]+-----/g, "")).slice(-32);
  }
  if (text.startsWith("ssh-")) return base64Bytes(text.split(" ")[1] ?? "").slice(-32);
  return base64Bytes(text).slice(-32);
}

// {status: "none" | "valid" | "invalid", detail}
export async function clientSignature(envelopeNode) {
  const sig = member(envelopeNode, "signature");
  const pub = member(envelopeNode, "public_key");
  if (!sig || !pub) return { status: "none", detail: "the event carries no client signature" };
  try {
    const raw = rawKey(pub.v);
    if (raw.length !== 32) throw new Error("not a 32-byte Ed25519 key");
    const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
    const message = canonicalBytes(member(envelopeNode, "event"));
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, base64Bytes(sig.v), message);
    return ok
      ? { status: "valid", detail: "Ed25519 signature of the event by the key it carries" }
      : { status: "invalid", detail: "the signature does not verify with the event's key" };
  } catch (exc) {
    return { status: "invalid", detail: `the key or signature cannot be used: ${exc.message}` };
  }
}
