// One streamed turn on the page: the user's message (or approvals), the reply as it arrives,
// tool calls and results, the approval buttons, the usage, errors.

import { streamTurn } from "./api.js";
import {
  clear,
  el,
  markGeneration,
  messageItem,
  toolCallItem,
  toolResultItem,
  usageText,
} from "./render.js";

/**
 * `view`: `{messages, approvals, usage}` elements; `onError(text)` shows an error;
 * `onDone()` runs after every turn (refresh the list and status); `setBusy(bool)`.
 */
export class ChatView {
  constructor(view, { onError, onDone, setBusy }) {
    this.view = view;
    this.onError = onError;
    this.onDone = onDone;
    this.setBusy = setBusy;
  }

  /** Send `message` to `bot` in `conversationId`. */
  async send(bot, conversationId, message) {
    this.view.messages.append(messageItem("user", message).item);
    await this.run(bot, { message, conversation_id: conversationId });
  }

  async run(bot, body) {
    const { messages, usage } = this.view;
    this.hideApprovals();
    usage.textContent = "";
    this.setBusy(true);
    const reply = messageItem("assistant", "");
    reply.item.classList.add("streaming");
    reply.item.dataset.deltas = "0";
    messages.append(reply.item);
    let current = reply;
    let generation = null; // the Bot generation answering (X-Kubebots-Generation)
    const handlers = {
      delta: (data) => {
        if (current === null) {
          current = messageItem("assistant", "");
          messages.append(current.item);
          current.item.dataset.deltas = "0";
          markGeneration(current.item, generation);
        }
        current.body.textContent += data.delta;
        current.item.dataset.deltas = String(Number(current.item.dataset.deltas) + 1);
        this.scroll();
      },
      tool_call: (data) => {
        this.dropIfEmpty(current);
        current = null;
        messages.append(toolCallItem(data.name, data.arguments));
      },
      tool_result: (data) => {
        messages.append(toolResultItem(data.name, data.content, data.is_error));
      },
      approval_required: (data) => this.showApprovals(bot, body.conversation_id, data.calls),
      done: (data) => {
        usage.textContent = usageText(data.usage);
      },
      error: (data) => this.fail(current, data.message || data.error),
    };
    try {
      await streamTurn(
        bot,
        body,
        (name, data) => {
          const handle = handlers[name];
          if (handle) handle(data);
        },
        (started) => {
          generation = started.generation;
          markGeneration(reply.item, generation);
        },
      );
    } catch (error) {
      this.fail(current, error.message);
    } finally {
      if (current) current.item.classList.remove("streaming");
      this.dropIfEmpty(current);
      this.setBusy(false);
      this.scroll();
    }
    await this.onDone();
  }

  fail(bubble, text) {
    if (bubble) {
      bubble.item.classList.add("bad");
      bubble.body.textContent += bubble.body.textContent ? `\n[${text}]` : `[${text}]`;
    }
    this.onError(text);
  }

  dropIfEmpty(bubble) {
    if (bubble && !bubble.body.textContent && !bubble.item.classList.contains("bad")) {
      bubble.item.remove();
    }
  }

  hideApprovals() {
    clear(this.view.approvals);
    this.view.approvals.hidden = true;
  }

  /** Approve / Reject per call; once every call is decided the decisions are sent. */
  showApprovals(bot, conversationId, calls) {
    const box = this.view.approvals;
    clear(box);
    box.append(el("p", "heading", "The Bot waits for your approval"));
    const decisions = new Map();
    for (const call of calls) {
      const row = el("div", "approval");
      row.append(el("code", null, `${call.name}(${call.arguments})`));
      for (const [label, approved] of [["Approve", true], ["Reject", false]]) {
        const button = el("button", approved ? null : "quiet", label);
        button.type = "button";
        button.addEventListener("click", () => {
          decisions.set(call.id, approved);
          row.replaceChildren(
            el("code", null, `${call.name}(${call.arguments})`),
            el("span", approved ? "ok" : "bad", approved ? "approved" : "rejected"),
          );
          if (decisions.size === calls.length) {
            const approvals = calls.map((c) => ({ id: c.id, approved: decisions.get(c.id) }));
            this.run(bot, { approvals, conversation_id: conversationId });
          }
        });
        row.append(button);
      }
      box.append(row);
    }
    box.hidden = false;
  }

  scroll() {
    this.view.messages.scrollTop = this.view.messages.scrollHeight;
  }
}
