// The log's hash schemes, leaf hashes and RFC 9162 proof verification (docs/verification.md,
// sections 2, 3 and 7), ported from auditlog/core/{hashing,entry,proof}.py. Sizes and indexes
// are BigInts: a log's size is a uint64 and JavaScript's bit operators stop at 32 bits.

import { blake3 } from "./blake3.js";

export class ProofError extends Error {}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

export const SCHEMES = {
  "rfc6962-sha256": {
    eventHashLeaves: false,
    leaf: (entry) => sha256(concat(LEAF, entry)),
    node: (l, r) => sha256(concat(NODE, l, r)),
    empty: () => sha256(new Uint8Array()),
  },
  "rfc6962-blake3": {
    eventHashLeaves: false,
    leaf: async (entry) => blake3(concat(LEAF, entry)),
    node: async (l, r) => blake3(concat(NODE, l, r)),
    empty: async () => blake3(new Uint8Array()),
  },
  "pangea-sha256": {
    eventHashLeaves: true,
    leaf: (entry) => sha256(entry),
    node: (l, r) => sha256(concat(l, r)),
    empty: () => sha256(new Uint8Array()),
  },
};

export function hasher(scheme) {
  const h = SCHEMES[scheme];
  if (!h) throw new ProofError(`unknown hash scheme ${JSON.stringify(scheme)}`);
  return h;
}

export const MAX_ENTRY_SIZE = 65535;
const DIGEST_PREFIX = new TextEncoder().encode("auditlog-digest/v1 sha256 ");

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// The leaf hash of a canonical envelope: the large-envelope rule, then the scheme's leaf hash.
export async function leafHash(scheme, canonical) {
  const h = hasher(scheme);
  if (canonical[0] !== 0x7b) throw new ProofError("a canonical envelope is a JSON object");
  if (h.eventHashLeaves) return h.leaf(canonical);
  let entry = canonical;
  if (canonical.length > MAX_ENTRY_SIZE) {
    entry = concat(DIGEST_PREFIX, new TextEncoder().encode(hex(await sha256(canonical))));
  }
  return h.leaf(entry);
}

function bitLength(n) {
  return n === 0n ? 0 : n.toString(2).length;
}

function popCount(n) {
  return [...n.toString(2)].filter((c) => c === "1").length;
}

function checkHashes(what, hashes) {
  hashes.forEach((h, i) => {
    if (h.length !== 32) throw new ProofError(`${what}[${i}] is ${h.length} bytes, expected 32`);
  });
}

export async function rootFromInclusionProof(scheme, index, size, leaf, proof) {
  const h = hasher(scheme);
  if (!(index >= 0n && index < size)) {
    throw new ProofError(`index ${index} is not below tree size ${size}`);
  }
  checkHashes("proof", proof);
  const inner = bitLength(index ^ (size - 1n));
  const border = popCount(index >> BigInt(inner));
  if (proof.length !== inner + border) {
    throw new ProofError(`wrong proof size ${proof.length}, want ${inner + border}`);
  }
  let acc = leaf;
  for (let i = 0; i < inner; i += 1) {
    acc = (index >> BigInt(i)) & 1n ? await h.node(proof[i], acc) : await h.node(acc, proof[i]);
  }
  for (let i = inner; i < inner + border; i += 1) acc = await h.node(proof[i], acc);
  return acc;
}

export async function verifyInclusion(scheme, index, size, leaf, proof, root) {
  const calculated = await rootFromInclusionProof(scheme, index, size, leaf, proof);
  if (!equal(calculated, root)) {
    throw new ProofError(
      `the inclusion proof leads to root ${hex(calculated)}, not the signed root ${hex(root)}`,
    );
  }
}

// That the tree of size2 with root2 extends the tree of size1 with root1 (RFC 9162 2.1.4.2).
export async function verifyConsistency(scheme, size1, size2, root1, root2, proof) {
  const h = hasher(scheme);
  if (!(size1 >= 0n && size1 <= size2)) throw new ProofError(`sizes ${size1} -> ${size2}`);
  checkHashes("proof", proof);
  if (size1 === 0n || size1 === size2) {
    if (proof.length) throw new ProofError("this consistency proof must be empty");
    if (size1 === 0n && !equal(root1, await h.empty())) throw new ProofError("empty-tree root");
    if (size1 === size2 && !equal(root1, root2)) {
      throw new ProofError("two checkpoints of one size with different roots: a fork");
    }
    return;
  }
  if (!proof.length) throw new ProofError("empty consistency proof");
  let inner = bitLength((size1 - 1n) ^ (size2 - 1n));
  const border = popCount((size1 - 1n) >> BigInt(inner));
  const shift = bitLength(size1 & -size1) - 1;
  inner -= shift;
  let seed = proof[0];
  let rest = proof.slice(1);
  if (size1 === 1n << BigInt(shift)) {
    seed = root1;
    rest = proof;
  }
  if (rest.length !== inner + border) {
    throw new ProofError(`wrong proof size ${proof.length}`);
  }
  const mask = (size1 - 1n) >> BigInt(shift);
  let hash1 = seed;
  let hash2 = seed;
  for (let i = 0; i < inner; i += 1) {
    if ((mask >> BigInt(i)) & 1n) {
      hash1 = await h.node(rest[i], hash1);
      hash2 = await h.node(rest[i], hash2);
    } else {
      hash2 = await h.node(hash2, rest[i]);
    }
  }
  for (let i = inner; i < inner + border; i += 1) {
    hash1 = await h.node(rest[i], hash1);
    hash2 = await h.node(rest[i], hash2);
  }
  if (!equal(hash1, root1)) throw new ProofError("the proof does not lead to the old root");
  if (!equal(hash2, root2)) throw new ProofError("the proof does not lead to the new root");
}
