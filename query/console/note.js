// C2SP signed notes, checkpoints, cosignatures and tlog-policy, ported from
// auditlog/core/{note,checkpoint,log_keys,cosignature,policy}.py (docs/verification.md,
// section 5 and "Witnesses and policies"). Ed25519 is the browser's own (WebCrypto).

import { equal, sha256 } from "./merkle.js";

export class NoteError extends Error {}

const SIG_PREFIX = "\u2014 ";
export const ALG_ED25519 = 0x01;
export const ALG_COSIGNATURE = 0x04;
const MAX_SIGNATURES = 100;
const utf8 = new TextEncoder();

export function b64decode(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new NoteError(`bad base64 ${JSON.stringify(text)}`);
  }
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  if (b64encode(bytes) !== text) throw new NoteError(`not canonical base64 ${text}`);
  return bytes;
}

export function b64encode(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

function validName(name) {
  return name.length > 0 && !name.includes("+") && !/\s/u.test(name);
}

async function keyId(name, type, pub) {
  const digest = await sha256(new Uint8Array([...utf8.encode(name), 0x0a, type, ...pub]));
  return digest.slice(0, 4);
}

// A key under a name: {name, keyId, type, pub, crypto key}. `type` 0x01 signs notes, 0x04
// cosigns (witnesses).
async function makeKey(name, type, pub) {
  const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  return { name, type, pub, keyId: await keyId(name, type, pub), key };
}

export async function parseVkey(vkey, type = ALG_ED25519) {
  // The name holds no "+"; the base64 after the key ID may.
  const m = /^([^+]+)\+([0-9a-f]{8})\+(.*)$/.exec(vkey.trim());
  if (!m || !validName(m[1])) throw new NoteError(`malformed verifier key ${JSON.stringify(vkey)}`);
  const [, name, id, b64] = m;
  const raw = b64decode(b64);
  if (raw.length !== 33 || raw[0] !== type) {
    throw new NoteError(`verifier key ${name} is not a type 0x0${type} Ed25519 key`);
  }
  const key = await makeKey(name, type, raw.slice(1));
  const expected = Uint8Array.from(id.match(/../g), (h) => parseInt(h, 16));
  if (!equal(key.keyId, expected)) throw new NoteError(`verifier key ${name}: wrong key ID`);
  return key;
}

export function renamed(key, name) {
  return makeKey(name, key.type, key.pub);
}

// A signed note's text (with its final newline) and signature lines, nothing verified yet.
export function parseNote(data) {
  if (/[\u0000-\u0009\u000b-\u001f]/.test(data)) throw new NoteError("control characters");
  const split = data.lastIndexOf("\n\n");
  if (split < 0) throw new NoteError("no blank line before the signatures");
  const text = data.slice(0, split + 1);
  const block = data.slice(split + 2);
  if (!block || !block.endsWith("\n")) throw new NoteError("the note must end with signatures");
  const signatures = block
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      if (!line.startsWith(SIG_PREFIX)) throw new NoteError(`not a signature line: ${line}`);
      const [name, encoded, ...extra] = line.slice(SIG_PREFIX.length).split(" ");
      const raw = b64decode(encoded ?? "");
      if (extra.length || !validName(name) || raw.length <= 4) {
        throw new NoteError(`malformed signature line: ${line}`);
      }
      return { name, keyId: raw.slice(0, 4), sig: raw.slice(4) };
    });
  if (signatures.length > MAX_SIGNATURES) throw new NoteError("more than 100 signatures");
  return { text, signatures };
}

export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new NoteError("checkpoint text must end with a newline");
  const [origin, size, root, ...extensions] = text.slice(0, -1).split("\n");
  if (!origin || root === undefined) throw new NoteError("checkpoint needs origin, size, root");
  if (!/^(0|[1-9]\d*)$/.test(size) || BigInt(size) >= 2n ** 63n) {
    throw new NoteError(`checkpoint size ${JSON.stringify(size)} is not a decimal`);
  }
  const rootBytes = b64decode(root);
  if (rootBytes.length !== 32) throw new NoteError("checkpoint root is not 32 bytes");
  if (extensions.some((line) => !line)) throw new NoteError("empty extension line");
  return { origin, size: BigInt(size), root: rootBytes, extensions };
}

export function keyCoversOrigin(name, origin) {
  return origin === name || origin.startsWith(`${name}/`);
}

async function ed25519(key, sig, message) {
  return sig.length === 64 && crypto.subtle.verify({ name: "Ed25519" }, key.key, sig, message);
}

// The key-name rule (auditlog/core/log_keys.py): the trusted keys as given, and each trusted key
// whose name covers the origin under every signature name that covers it too.
async function checkpointVerifiers(origin, trusted, names) {
  const out = [...trusted];
  const covering = [...new Set(names)].filter((n) => keyCoversOrigin(n, origin)).sort();
  for (const key of trusted) {
    if (!keyCoversOrigin(key.name, origin)) continue;
    for (const name of covering) {
      if (name !== key.name) out.push({ ...(await renamed(key, name)), via: key });
    }
  }
  return out;
}

// Open a signed checkpoint with trusted log keys: {checkpoint, text, signedBy: [keys]}.
// NoteError when a known key's signature is bad or no trusted key signed it.
export async function openCheckpoint(note, trusted) {
  const parsed = parseNote(note);
  const claimed = parseCheckpoint(parsed.text).origin;
  const verifiers = await checkpointVerifiers(
    claimed,
    trusted,
    parsed.signatures.map((s) => s.name),
  );
  const message = utf8.encode(parsed.text);
  const signedBy = [];
  const seen = new Set();
  for (const sig of parsed.signatures) {
    const v = verifiers.find((k) => k.name === sig.name && equal(k.keyId, sig.keyId));
    const ident = `${sig.name} ${sig.keyId}`;
    if (!v || seen.has(ident)) continue;
    seen.add(ident);
    if (!(await ed25519(v, sig.sig, message))) {
      throw new NoteError(`the signature by ${sig.name} does not verify`);
    }
    signedBy.push({ name: sig.name, key: v.via ?? v });
  }
  if (!signedBy.length) {
    const names = trusted.map((k) => k.name).join(", ") || "none";
    throw new NoteError(`the checkpoint is not signed by any trusted key (${names})`);
  }
  return { checkpoint: parseCheckpoint(parsed.text), text: parsed.text, signedBy, parsed };
}

// name -> timestamp of every valid cosignature by a known witness; a line that claims a known
// witness key but does not verify fails the whole checkpoint, as the Python verifier does.
export async function verifiedCosigners(parsed, witnesses) {
  const out = new Map();
  for (const sig of parsed.signatures) {
    const entry = [...witnesses].find(([, w]) => w.name === sig.name && equal(w.keyId, sig.keyId));
    if (!entry || out.has(entry[0])) continue;
    const [label, witness] = entry;
    if (sig.sig.length !== 72) throw new NoteError(`cosignature by ${sig.name} is malformed`);
    const view = new DataView(sig.sig.buffer, sig.sig.byteOffset, 8);
    const timestamp = view.getBigUint64(0);
    const header = utf8.encode(`cosignature/v1\ntime ${timestamp}\n`);
    const message = new Uint8Array([...header, ...utf8.encode(parsed.text)]);
    if (!(await ed25519(witness, sig.sig.slice(8), message))) {
      throw new NoteError(`cosignature by witness ${sig.name} does not verify`);
    }
    out.set(label, Number(timestamp));
  }
  return out;
}

// A C2SP tlog-policy: {logs: [keys], witnesses: Map(name -> key), groups, quorum}.
export async function parsePolicy(text) {
  const policy = { logs: [], witnesses: new Map(), groups: new Map(), quorum: null };
  const names = new Set();
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n += 1) {
    const items = lines[n].replace(/\t/g, " ").split(" ").filter(Boolean);
    if (!items.length || items[0].startsWith("#")) continue;
    const [word, ...args] = items;
    const where = `policy line ${n + 1}`;
    if (word === "log" && (args.length === 1 || args.length === 2)) {
      policy.logs.push(await parseVkey(args[0]));
    } else if (word === "witness" && (args.length === 2 || args.length === 3)) {
      if (names.has(args[0])) throw new NoteError(`${where}: ${args[0]} defined twice`);
      names.add(args[0]);
      policy.witnesses.set(args[0], await parseVkey(args[1], ALG_COSIGNATURE));
    } else if (word === "group" && args.length >= 3) {
      const [name, spec, ...members] = args;
      if (names.has(name)) throw new NoteError(`${where}: ${name} defined twice`);
      if (members.some((m) => !names.has(m))) throw new NoteError(`${where}: undefined member`);
      let k = spec === "all" ? members.length : spec === "any" ? 1 : Number(spec);
      if (!Number.isInteger(k) || k < 1 || k > members.length) {
        throw new NoteError(`${where}: bad threshold ${spec}`);
      }
      names.add(name);
      policy.groups.set(name, { k, members });
    } else if (word === "quorum" && args.length === 1) {
      if (policy.quorum !== null) throw new NoteError(`${where}: a second quorum line`);
      if (args[0] !== "none" && !names.has(args[0])) throw new NoteError(`${where}: undefined`);
      policy.quorum = args[0];
    } else {
      throw new NoteError(`${where}: not a tlog-policy line`);
    }
  }
  if (policy.quorum === null) throw new NoteError("the policy has no quorum line");
  return policy;
}

export function satisfied(policy, cosigners, name = policy.quorum) {
  if (name === "none") return true;
  if (policy.witnesses.has(name)) return cosigners.has(name);
  const group = policy.groups.get(name);
  return group.members.filter((m) => satisfied(policy, cosigners, m)).length >= group.k;
}

// The witnesses' verdict on an opened checkpoint: {met, fresh: Map, stale: Map(name -> why)}.
// A cosignature older than maxAge seconds, or more than 300 s ahead of `now`, does not count.
export async function checkQuorum(policy, opened, now, maxAge) {
  const all = await verifiedCosigners(opened.parsed, policy.witnesses);
  const fresh = new Map();
  const stale = new Map();
  for (const [name, ts] of all) {
    const age = now - ts;
    if (maxAge != null && age > maxAge) stale.set(name, `${age} s old, the bound is ${maxAge} s`);
    else if (maxAge != null && -age > 300) stale.set(name, `${-age} s in the future`);
    else fresh.set(name, ts);
  }
  return { met: satisfied(policy, fresh), fresh, stale };
}
