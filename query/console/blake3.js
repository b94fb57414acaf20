// BLAKE3 (32-byte output, unkeyed), for logs of the rfc6962-blake3 scheme: browsers have no
// BLAKE3 of their own. A straight port of the BLAKE3 reference implementation; the browser tests
// compare it with Python's blake3 package on inputs of every length from 0 to 2,100 bytes and a
// few of many chunks.

const IV = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const BLOCK_LEN = 64;
const CHUNK_LEN = 1024;

function g(s, a, b, c, d, x, y) {
  s[a] = (s[a] + s[b] + x) | 0;
  s[d] = ((s[d] ^ s[a]) >>> 16) | ((s[d] ^ s[a]) << 16);
  s[c] = (s[c] + s[d]) | 0;
  s[b] = ((s[b] ^ s[c]) >>> 12) | ((s[b] ^ s[c]) << 20);
  s[a] = (s[a] + s[b] + y) | 0;
  s[d] = ((s[d] ^ s[a]) >>> 8) | ((s[d] ^ s[a]) << 24);
  s[c] = (s[c] + s[d]) | 0;
  s[b] = ((s[b] ^ s[c]) >>> 7) | ((s[b] ^ s[c]) << 25);
}

// The 16-word state after compressing one block; its first 8 words are a chaining value.
function compress(cv, block, counter, blockLen, flags) {
  const s = new Int32Array([
    ...cv,
    ...IV.slice(0, 4),
    counter % 2 ** 32,
    Math.floor(counter / 2 ** 32),
    blockLen,
    flags,
  ]);
  let m = Int32Array.from(block);
  for (let round = 0; round < 7; round += 1) {
    g(s, 0, 4, 8, 12, m[0], m[1]);
    g(s, 1, 5, 9, 13, m[2], m[3]);
    g(s, 2, 6, 10, 14, m[4], m[5]);
    g(s, 3, 7, 11, 15, m[6], m[7]);
    g(s, 0, 5, 10, 15, m[8], m[9]);
    g(s, 1, 6, 11, 12, m[10], m[11]);
    g(s, 2, 7, 8, 13, m[12], m[13]);
    g(s, 3, 4, 9, 14, m[14], m[15]);
    if (round < 6) m = Int32Array.from(PERMUTATION, (i) => m[i]);
  }
  for (let i = 0; i < 8; i += 1) {
    s[i] ^= s[i + 8];
    s[i + 8] ^= cv[i];
  }
  return s;
}

function words(bytes, offset, length) {
  const block = new Int32Array(16);
  for (let i = 0; i < length; i += 1) {
    block[i >> 2] |= bytes[offset + i] << (8 * (i & 3));
  }
  return block;
}

// What is left to compress last: a chunk's final block, or a parent node.
function chunkOutput(bytes, start, end, counter) {
  let cv = IV;
  const blocks = Math.max(1, Math.ceil((end - start) / BLOCK_LEN));
  for (let i = 0; i < blocks - 1; i += 1) {
    const flags = i === 0 ? CHUNK_START : 0;
    cv = Array.from(
      compress(cv, words(bytes, start + i * BLOCK_LEN, BLOCK_LEN), counter, BLOCK_LEN, flags).slice(
        0,
        8,
      ),
    );
  }
  const offset = start + (blocks - 1) * BLOCK_LEN;
  const length = end - offset;
  const flags = (blocks === 1 ? CHUNK_START : 0) | CHUNK_END;
  return { cv, block: words(bytes, offset, length), counter, blockLen: length, flags };
}

function chainingValue(out) {
  return Array.from(compress(out.cv, out.block, out.counter, out.blockLen, out.flags).slice(0, 8));
}

function parentOutput(left, right) {
  return {
    cv: IV,
    block: Int32Array.from([...left, ...right]),
    counter: 0,
    blockLen: BLOCK_LEN,
    flags: PARENT,
  };
}

export function blake3(bytes) {
  const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_LEN));
  const stack = [];
  for (let c = 0; c < chunks - 1; c += 1) {
    let cv = chainingValue(chunkOutput(bytes, c * CHUNK_LEN, (c + 1) * CHUNK_LEN, c));
    // Merge completed subtrees: one merge for each trailing zero bit of the chunk count.
    let total = c + 1;
    while ((total & 1) === 0) {
      cv = chainingValue(parentOutput(stack.pop(), cv));
      total >>= 1;
    }
    stack.push(cv);
  }
  let out = chunkOutput(bytes, (chunks - 1) * CHUNK_LEN, bytes.length, chunks - 1);
  while (stack.length) {
    out = parentOutput(stack.pop(), chainingValue(out));
  }
  const root = compress(out.cv, out.block, out.counter, out.blockLen, out.flags | ROOT);
  const digest = new Uint8Array(32);
  for (let i = 0; i < 32; i += 1) digest[i] = (root[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return digest;
}
