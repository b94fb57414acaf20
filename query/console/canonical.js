// Canonical JSON, as the log hashes it: Python's
//   json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
// (docs/verification.md, section 1). JSON.parse cannot be used to check it: it forgets whether
// a number was 1 or 1.0, rounds big integers and keeps one of two duplicate keys. So this parser
// keeps every number's spelling and every value's place in the text, and `canonical` writes a
// tree back the way Python would.

export class JsonError extends Error {}

const WS = new Set([" ", "\t", "\n", "\r"]);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

// A node: {t: "obj", entries: [[key, node]...]} | {t: "arr", items} | {t: "str", v}
// | {t: "num", lex} | {t: "lit", v}; each with start and end offsets into the text.
export function parseTree(text) {
  let pos = 0;
  const skip = () => {
    while (pos < text.length && WS.has(text[pos])) pos += 1;
  };
  const fail = (what) => {
    throw new JsonError(`${what} at offset ${pos}`);
  };
  const string = () => {
    const start = pos;
    pos += 1;
    while (pos < text.length && text[pos] !== '"') {
      if (text[pos] < " ") fail("control character in a string");
      pos += text[pos] === "\\" ? 2 : 1;
    }
    if (pos >= text.length) fail("unterminated string");
    pos += 1;
    return { t: "str", v: JSON.parse(text.slice(start, pos)), start, end: pos };
  };
  const value = (depth) => {
    if (depth > 512) fail("nesting too deep");
    skip();
    const start = pos;
    const c = text[pos];
    if (c === "{") {
      pos += 1;
      const entries = [];
      skip();
      if (text[pos] === "}") {
        pos += 1;
        return { t: "obj", entries, start, end: pos };
      }
      for (;;) {
        skip();
        if (text[pos] !== '"') fail("expected a key");
        const key = string().v;
        skip();
        if (text[pos] !== ":") fail("expected ':'");
        pos += 1;
        entries.push([key, value(depth + 1)]);
        skip();
        if (text[pos] === ",") {
          pos += 1;
        } else if (text[pos] === "}") {
          pos += 1;
          return { t: "obj", entries, start, end: pos };
        } else {
          fail("expected ',' or '}'");
        }
      }
    }
    if (c === "[") {
      pos += 1;
      const items = [];
      skip();
      if (text[pos] === "]") {
        pos += 1;
        return { t: "arr", items, start, end: pos };
      }
      for (;;) {
        items.push(value(depth + 1));
        skip();
        if (text[pos] === ",") {
          pos += 1;
        } else if (text[pos] === "]") {
          pos += 1;
          return { t: "arr", items, start, end: pos };
        } else {
          fail("expected ',' or ']'");
        }
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ]) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return { t: "lit", v, start, end: pos };
      }
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) fail("unexpected character");
    pos += m[0].length;
    return { t: "num", lex: m[0], start, end: pos };
  };
  const root = value(0);
  skip();
  if (pos !== text.length) fail("trailing characters");
  return root;
}

// The node as plain JavaScript values, for display (numbers may lose precision here).
export function toValue(node) {
  switch (node.t) {
    case "obj":
      return Object.fromEntries(node.entries.map(([k, v]) => [k, toValue(v)]));
    case "arr":
      return node.items.map(toValue);
    case "num":
      return Number(node.lex);
    default:
      return node.v;
  }
}

// The member `key` of an object node, or undefined.
export function member(node, key) {
  if (!node || node.t !== "obj") return undefined;
  const found = node.entries.find(([k]) => k === key);
  return found ? found[1] : undefined;
}

function compareCodePoints(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

// Python's repr of a float: the shortest digits that round-trip (as JavaScript's), written in
// exponent form when the decimal exponent is below -4 or at least 16 ("1e-05", "1e+16").
export function pythonFloat(x) {
  if (!Number.isFinite(x)) throw new JsonError("NaN and infinities cannot be canonical");
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, expText] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const e = String(Math.abs(exp)).padStart(2, "0");
    return `${sign}${digits[0]}${frac}e${exp < 0 ? "-" : "+"}${e}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1) || "0";
  return `${sign}${whole}.${frac}`;
}

function number(lex) {
  if (/[.eE]/.test(lex)) return pythonFloat(Number(lex));
  return BigInt(lex).toString(); // Python reads "-0" as the integer 0
}

// The canonical text of a node; JsonError for what cannot be canonical.
export function canonical(node) {
  switch (node.t) {
    case "obj": {
      const seen = new Set();
      for (const [k] of node.entries) {
        if (seen.has(k)) throw new JsonError(`duplicate key ${JSON.stringify(k)}`);
        seen.add(k);
      }
      const sorted = [...node.entries].sort(([a], [b]) => compareCodePoints(a, b));
      return `{${sorted.map(([k, v]) => `${quote(k)}:${canonical(v)}`).join(",")}}`;
    }
    case "arr":
      return `[${node.items.map(canonical).join(",")}]`;
    case "str":
      return quote(node.v);
    case "num":
      return number(node.lex);
    default:
      return JSON.stringify(node.v);
  }
}

function quote(s) {
  if (LONE_SURROGATE.test(s)) throw new JsonError("a lone surrogate cannot be canonical");
  // JSON.stringify escapes exactly what Python's ensure_ascii=False does: the quote, the
  // backslash and controls below U+0020 (short forms, else \u00xx in lower case).
  return JSON.stringify(s);
}

export function canonicalOf(text) {
  return canonical(parseTree(text));
}

// The UTF-8 bytes of a node's canonical JSON (what a client signature signs: the event's).
export function canonicalBytes(node) {
  return new TextEncoder().encode(canonical(node));
}
