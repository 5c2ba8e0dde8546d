// The chat API of this origin: JSON requests and the Server-Sent Events of a streamed turn.
// The API key (if any) lives in sessionStorage only: it is gone when the browser tab closes.

const KEY_ITEM = "kubebots.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) {
    sessionStorage.setItem(KEY_ITEM, key);
  } else {
    sessionStorage.removeItem(KEY_ITEM);
  }
}

/** An error answered by the API: its HTTP status and the body's `error` and `message`. */
export class ApiError extends Error {
  constructor(status, error, message) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

function headers(stream) {
  const out = { Accept: stream ? "text/event-stream" : "application/json" };
  if (stream) out["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function failure(response) {
  let error = `HTTP ${response.status}`;
  let message = response.statusText || error;
  try {
    const body = await response.json();
    error = body.error || error;
    message = body.message || message;
  } catch {
    // not JSON (a proxy's page): the status says it
  }
  return new ApiError(response.status, error, message);
}

function path(...parts) {
  return "/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

async function getJson(url) {
  const response = await fetch(url, { headers: headers(false), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const listBots = () => getJson("/bots");
export const getBot = (bot) => getJson(path("bots", bot));
export const listConversations = (bot) => getJson(path("bots", bot, "conversations"));
export const getConversation = (bot, id) => getJson(path("bots", bot, "conversations", id));

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

/** The response header naming the Bot generation that answered a turn. */
const GENERATION_HEADER = "X-Kubebots-Generation";

/**
 * Stream one turn: `body` is `{message}` or `{approvals}` with `conversation_id`; `onEvent` gets
 * each event (`delta`, `tool_call`, `tool_result`, `approval_required`, `done`, `error`) as
 * `(name, data)` while it arrives, after `onStart({generation})` (the generation answering, null
 * when the response does not say). Refused requests throw an ApiError.
 */
export async function streamTurn(bot, body, onEvent, onStart = () => {}) {
  const response = await fetch(path("bots", bot, "chat", "stream"), {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify(body),
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response);
  onStart({ generation: response.headers.get(GENERATION_HEADER) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    buffer = buffer.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const parsed = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (parsed) onEvent(parsed.event, parsed.data);
    }
    if (done) return;
  }
}
