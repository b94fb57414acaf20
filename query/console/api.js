// The service's own endpoints, called with the signed-in token. The token lives in session
// storage (this tab only, gone when it closes) and travels only in the Authorization header,
// never in a URL.

import { member, parseTree, toValue } from "./canonical.js";

const TOKEN = "auditlog.token";

export class Unauthorized extends Error {}
export class ApiError extends Error {}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN);
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN, token.trim());
  },
  signOut() {
    sessionStorage.removeItem(TOKEN);
  },
};

async function send(method, path, body, auth = true) {
  const headers = {};
  if (auth && session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 401)
    throw new Unauthorized("the token was refused (expired, revoked or unknown)");
  return response;
}

// A Pangea-style JSON call: {tree (the answer with every value's place in the text), text,
// result (plain values)}. The tree is what lets a page take an envelope's exact bytes.
export async function pangea(path, body) {
  const response = await send("POST", path, body);
  const text = await response.text();
  const tree = parseTree(text);
  const answer = toValue(tree);
  if (answer.status !== "Success") {
    throw new ApiError(`${answer.status}: ${answer.summary}`);
  }
  return { text, tree, result: answer.result };
}

// The events of a search or results answer, each with its envelope as the exact text served.
export function eventsOf({ text, tree }) {
  const events = member(member(tree, "result"), "events");
  return (events?.items ?? []).map((node) => {
    const env = member(node, "envelope");
    return {
      envelopeText: text.slice(env.start, env.end),
      envelope: toValue(env),
      envelopeNode: env,
      hash: toValue(member(node, "hash")),
      log: toValue(member(node, "log")),
      index: toValue(member(node, "leaf_index")),
    };
  });
}

export async function getJson(path) {
  const response = await send("GET", path, undefined, false);
  const answer = await response.json();
  if (answer.status !== "Success") throw new ApiError(`${answer.status}: ${answer.summary}`);
  return answer.result;
}

export async function getText(path, auth = false) {
  const response = await send("GET", path, undefined, auth);
  const text = await response.text();
  if (!response.ok) {
    let summary = text;
    try {
      summary = JSON.parse(text).summary;
    } catch {
      // not a Pangea answer: keep the text
    }
    throw new ApiError(`${response.status}: ${summary}`);
  }
  return text;
}
