// What the user trusts, kept in this browser (local storage), never taken from the server:
// pinned log verifier keys, an optional witness policy and cosignature age bound, and the last
// checkpoint of each log this browser verified (for consistency checks). The keys the server
// lists are used only when nothing is pinned, and every answer says so.

import { getJson } from "./api.js";
import { parsePolicy, parseVkey } from "./note.js";

const KEYS = "auditlog.pinned-keys";
const POLICY = "auditlog.policy";
const MAX_AGE = "auditlog.max-cosignature-age";
const SEEN = "auditlog.seen.";

export const pins = {
  get keys() {
    return localStorage.getItem(KEYS) ?? "";
  },
  get policy() {
    return localStorage.getItem(POLICY) ?? "";
  },
  get maxAge() {
    return localStorage.getItem(MAX_AGE) ?? "";
  },
  save(keys, policy, maxAge) {
    localStorage.setItem(KEYS, keys.trim());
    localStorage.setItem(POLICY, policy.trim());
    localStorage.setItem(MAX_AGE, String(maxAge).trim());
  },
};

let logsCache = null;

export async function listLogs(fresh = false) {
  if (fresh || !logsCache) logsCache = (await getJson("../v1/logs")).logs;
  return logsCache;
}

// The pinned keys and policy as text would be parsed; NoteError when they cannot be.
export async function parsePins(keysText, policyText) {
  const lines = keysText
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const keys = [];
  for (const line of lines) keys.push(await parseVkey(line));
  const policy = policyText.trim() ? await parsePolicy(`${policyText}\n`) : undefined;
  return { keys, policy };
}

// {keys, served, policy, maxAge, now}: the trust verifyEvent takes. Pinned keys if any; else
// the keys this same server lists, marked `served` (not an independent check).
export async function currentTrust() {
  const pinned = await parsePins(pins.keys, pins.policy);
  const { policy } = pinned;
  let { keys } = pinned;
  let served = false;
  if (!keys.length && !policy?.logs.length) {
    served = true;
    const listed = (await listLogs()).map((l) => l.vkey).filter(Boolean);
    keys = await Promise.all(listed.map((v) => parseVkey(v)));
  }
  const maxAge = pins.maxAge ? Number(pins.maxAge) : undefined;
  return { keys, served, policy, maxAge, now: Math.floor(Date.now() / 1000) };
}

export const seen = {
  get(origin) {
    const raw = localStorage.getItem(SEEN + origin);
    return raw ? JSON.parse(raw) : null;
  },
  set(origin, note, size) {
    localStorage.setItem(
      SEEN + origin,
      JSON.stringify({ note, size: String(size), at: Date.now() }),
    );
  },
};
