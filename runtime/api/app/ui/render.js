// DOM builders. Every text from the API or the user goes in with textContent, never as HTML.

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function clear(node) {
  node.replaceChildren();
}

/** A Bot's status (`GET /bots/{id}`) as a definition list. */
export function renderStatus(dl, bot) {
  clear(dl);
  const served = bot.served_revision === null ? "not loaded here" : bot.served_revision;
  const rows = [
    ["status", bot.status],
    ["model", `${bot.provider} / ${bot.model}`],
    ["generation", bot.generation],
    ["store revision", bot.revision],
    ["served revision", served],
  ];
  if (bot.rollout) rows.push(["rollout", rolloutText(bot.rollout)]);
  if (bot.error) rows.push(["error", bot.error]);
  for (const [name, value] of rows) {
    const dd = el("dd", name === "error" ? "bad" : null, value);
    if (name === "rollout") {
      dd.className = bot.rollout.phase === "Progressing" ? "rollout" : "rollout bad";
      dd.dataset.phase = bot.rollout.phase;
    }
    dl.append(el("dt", null, name), dd);
  }
}

/**
 * A Bot's rollout (`GET /bots/{id}`'s `rollout`) in a line: "step 2, 30% to generation 5
 * (stable 4)". `step` counts from 1.
 */
export function rolloutText(rollout) {
  const stable = `(stable ${rollout.stableGeneration})`;
  const attempt = rollout.attempt > 1 ? `, attempt ${rollout.attempt}` : "";
  if (rollout.phase !== "Progressing") {
    return `${rollout.phase}: generation ${rollout.candidateGeneration} ${stable}${attempt}`;
  }
  const share = rollout.shadow
    ? `shadow: ${rollout.weight}% mirrored to generation ${rollout.candidateGeneration}`
    : `${rollout.weight}% to generation ${rollout.candidateGeneration}`;
  return `step ${rollout.step}, ${share} ${stable}${attempt}`;
}

/** A chat bubble: `{item, body}` (the body is where streamed text goes). */
export function messageItem(role, text) {
  const item = el("li", `msg msg-${role}`);
  item.append(el("span", "role", role));
  const body = el("div", "body", text);
  item.append(body);
  return { item, body };
}

/** Mark a reply with the Bot generation that answered it (a small "gen 5" badge). */
export function markGeneration(item, generation) {
  if (generation === undefined || generation === null || generation === "") return;
  item.dataset.generation = String(generation);
  const role = item.querySelector(".role");
  const badge = role.querySelector(".gen") || role.appendChild(el("span", "gen"));
  badge.textContent = `gen ${generation}`;
}

export function toolCallItem(name, args) {
  const item = el("li", "tool tool-call");
  item.append(el("span", "role", "tool call"), el("code", null, `${name}(${args})`));
  return item;
}

export function toolResultItem(name, content, isError) {
  const item = el("li", isError ? "tool tool-result bad" : "tool tool-result");
  item.append(el("span", "role", `${name || "tool"} returned`), el("code", null, content));
  return item;
}

/** A stored conversation's messages (`GET .../conversations/{id}`), tool calls included. */
export function renderHistory(ol, messages) {
  clear(ol);
  const names = new Map();
  for (const message of messages) {
    if (message.role === "tool") {
      const name = names.get(message.tool_call_id);
      ol.append(toolResultItem(name, message.content, false));
      continue;
    }
    if (message.content || !message.tool_calls) {
      const { item } = messageItem(message.role, message.content);
      item.title = message.created_at;
      if (message.role === "assistant") markGeneration(item, message.generation);
      ol.append(item);
    }
    for (const call of message.tool_calls || []) {
      names.set(call.id, call.function.name);
      ol.append(toolCallItem(call.function.name, call.function.arguments));
    }
  }
}

/** The conversation list; `onOpen(id)` opens one. */
export function renderConversations(ul, ids, current, onOpen) {
  clear(ul);
  if (!ids.length) {
    ul.append(el("li", "muted", "none yet"));
    return;
  }
  for (const id of ids) {
    const button = el("button", id === current ? "conv current" : "conv", id);
    button.type = "button";
    button.addEventListener("click", () => onOpen(id));
    const item = el("li");
    item.append(button);
    ul.append(item);
  }
}

/** Natural order (chat-2 before chat-10). */
export function naturalSort(ids) {
  return [...ids].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

/** The next free `chat-N` among `ids`. */
export function nextConversationId(ids) {
  const taken = new Set(ids);
  let n = 1;
  while (taken.has(`chat-${n}`)) n += 1;
  return `chat-${n}`;
}

export function usageText(usage) {
  if (!usage) return "";
  const estimated = usage.estimated ? " (estimated)" : "";
  return (
    `last turn: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ` +
    `${usage.total_tokens} tokens${estimated}`
  );
}
