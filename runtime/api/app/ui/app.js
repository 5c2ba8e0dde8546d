// The console: the API key, the Bot picker and its status, the conversation list, the chat.
// What is open (Bot, conversation) is remembered in sessionStorage, so a reload shows it again.

import * as api from "./api.js";
import { ChatView } from "./chat.js";
import {
  clear,
  naturalSort,
  nextConversationId,
  renderConversations,
  renderHistory,
  renderStatus,
} from "./render.js";

const $ = (id) => document.getElementById(id);
const BOT_ITEM = "kubebots.bot";
const conversationItem = (bot) => `kubebots.conversation.${bot}`;

class Console {
  constructor() {
    this.bot = null;
    this.conversation = null;
    this.conversations = [];
    this.busy = false;
    this.loading = 0; // Bots or conversations being opened: no sending until they are shown
    this.chat = new ChatView(
      { messages: $("messages"), approvals: $("approvals"), usage: $("usage") },
      {
        onError: (text) => this.showError(text),
        onDone: () => this.refresh(),
        setBusy: (busy) => this.setBusy(busy),
      },
    );
  }

  start() {
    $("api-key").value = api.apiKey();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      api.setApiKey($("api-key").value.trim());
      this.loadBots();
    });
    $("key-forget").addEventListener("click", () => {
      api.setApiKey("");
      $("api-key").value = "";
      this.loadBots();
    });
    $("bot").addEventListener("change", () => this.selectBot($("bot").value));
    $("new-conversation").addEventListener("click", () => {
      this.openConversation(nextConversationId(this.conversations));
    });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    $("message").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.send();
      }
    });
    this.loadBots();
  }

  showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }

  setBusy(busy) {
    this.busy = busy;
    const ready = this.bot !== null && !busy && this.loading === 0;
    $("message").disabled = !ready;
    $("send").disabled = !ready;
    $("new-conversation").disabled = !ready;
    $("bot").disabled = busy || !this.bot;
  }

  /** Run `action`, showing what it throws (and an API key hint for a 401). */
  async attempt(action) {
    try {
      await action();
      return true;
    } catch (error) {
      const hint = error.status === 401 ? " Enter an API key above." : "";
      this.showError(`${error.message}.${hint}`.replace("..", "."));
      return false;
    }
  }

  async loadBots() {
    this.showError("");
    const select = $("bot");
    clear(select);
    this.bot = null;
    this.setBusy(false);
    let bots = [];
    const loaded = await this.attempt(async () => {
      bots = (await api.listBots()).bots;
    });
    if (!loaded) return this.reset("No Bot available");
    if (!bots.length) return this.reset("This key may use no Bot");
    for (const id of bots) {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      select.append(option);
    }
    const remembered = sessionStorage.getItem(BOT_ITEM);
    await this.selectBot(bots.includes(remembered) ? remembered : bots[0]);
  }

  reset(title) {
    $("conversation-title").textContent = title;
    clear($("messages"));
    clear($("conversations"));
    clear($("bot-status"));
    this.setBusy(false);
  }

  /** Run `action` with the composer off, so a message typed meanwhile is not sent elsewhere. */
  async whileLoading(action) {
    this.loading += 1;
    this.setBusy(this.busy);
    try {
      await action();
    } finally {
      this.loading -= 1;
      this.setBusy(this.busy);
    }
  }

  async selectBot(bot) {
    this.showError("");
    this.bot = bot;
    $("bot").value = bot;
    sessionStorage.setItem(BOT_ITEM, bot);
    $("usage").textContent = "";
    await this.whileLoading(async () => {
      await this.refresh();
      if (bot !== this.bot) return; // another Bot was picked meanwhile
      const remembered = sessionStorage.getItem(conversationItem(bot));
      const latest = this.conversations[this.conversations.length - 1];
      await this.openConversation(remembered || latest || nextConversationId(this.conversations));
    });
  }

  /** The Bot's status and its conversation list, fetched again. */
  async refresh() {
    const bot = this.bot;
    await this.attempt(async () => {
      const [status, list] = await Promise.all([api.getBot(bot), api.listConversations(bot)]);
      if (bot !== this.bot) return; // another Bot was picked meanwhile
      renderStatus($("bot-status"), status);
      this.conversations = naturalSort(list.conversations);
      this.renderList();
    });
  }

  renderList() {
    const open = (id) => this.openConversation(id);
    renderConversations($("conversations"), this.conversations, this.conversation, open);
  }

  async openConversation(id) {
    const bot = this.bot;
    this.conversation = id;
    sessionStorage.setItem(conversationItem(bot), id);
    this.renderList();
    this.chat.hideApprovals();
    clear($("messages"));
    const stored = this.conversations.includes(id);
    $("conversation-title").textContent = stored ? id : `${id} (new: send a message to start it)`;
    if (!stored) return;
    await this.whileLoading(() =>
      this.attempt(async () => {
        const conversation = await api.getConversation(bot, id);
        if (bot === this.bot && id === this.conversation) {
          renderHistory($("messages"), conversation.messages);
        }
      }),
    );
  }

  async send() {
    const text = $("message").value;
    if (!text.trim() || this.busy || this.loading || !this.bot) return;
    $("message").value = "";
    this.showError("");
    const id = this.conversation;
    $("conversation-title").textContent = id;
    await this.chat.send(this.bot, id, text);
    this.renderList();
    $("message").focus();
  }
}

new Console().start();
