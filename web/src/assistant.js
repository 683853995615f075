/**
 * The assistant panel: a chat with the notebook's assistant (the Chat server
 * stream, over gRPC-Web). The answer streams in as it is written; each tool
 * call shows as a step (its name, its arguments, then whether it worked), and
 * the cell edits and runs it makes appear in the notebook through the
 * notebook's own feeds, like anyone's.
 */

import { Code, stream } from "./client.js";
import { h } from "./dom.js";

export class AssistantPanel {
  constructor(session) {
    this.session = session;
    this.conversationId = "";
    this.busy = false;
    this.log = h("div", { class: "chat-log", "aria-live": "polite" });
    this.input = h("textarea", {
      class: "chat-input",
      rows: 3,
      placeholder: "Ask the assistant about this notebook…",
      "aria-label": "Message to the assistant",
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.send();
      }
    });
    this.sendButton = h("button", { type: "submit", class: "primary", text: "Send" });
    const form = h("form", { class: "chat-form" }, this.input, this.sendButton);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    const restart = h("button", {
      type: "button",
      class: "link",
      text: "New conversation",
      onclick: () => {
        this.conversationId = "";
        this.log.replaceChildren();
      },
    });
    this.root = h("section", { class: "panel-body chat" }, h("div", { class: "row" }, h("span", { class: "spacer" }), restart), this.log, form);
  }

  async send() {
    const message = this.input.value.trim();
    if (!message || this.busy) return;
    this.input.value = "";
    this.setBusy(true);
    this.log.append(h("div", { class: "msg msg-user", text: message }));
    const answer = h("div", { class: "msg msg-assistant" });
    let text = null;
    this.log.append(answer);
    const request = { notebookId: this.session.id, message };
    if (this.conversationId) request.conversationId = this.conversationId;
    const steps = new Map();
    const onEvent = (event) => {
      if (event.conversationStarted) this.conversationId = event.conversationStarted.conversationId;
      else if (event.textDelta) {
        if (!text) answer.append((text = h("p", { class: "msg-text" })));
        text.append(event.textDelta.text || "");
      } else if (event.toolCallStarted) {
        const call = event.toolCallStarted.call || {};
        const step = h(
          "div",
          { class: "step step-running" },
          h("span", { class: "step-name", text: call.name || "tool" }),
          h("code", { class: "step-args", text: shortArguments(call.argumentsJson) }),
        );
        steps.set(call.id, step);
        answer.append(step);
        text = null; // text after a step starts a new paragraph
      } else if (event.toolCallFinished) {
        const { callId, ok, summary } = event.toolCallFinished;
        const step = steps.get(callId);
        if (step) {
          step.className = `step ${ok ? "step-ok" : "step-failed"}`;
          if (summary) step.append(h("span", { class: "step-summary", text: this.session.humanize(summary) }));
        }
      } else if (event.error) {
        answer.append(h("p", { class: "chat-error", text: event.error.message || event.error.code }));
      }
      this.log.scrollTop = this.log.scrollHeight;
    };
    try {
      await stream("assistant", "chat", request, onEvent);
    } catch (error) {
      if (error.code !== Code.Unauthenticated) {
        answer.append(h("p", { class: "chat-error", text: error.message }));
      }
    } finally {
      this.setBusy(false);
    }
  }

  setBusy(busy) {
    this.busy = busy;
    this.sendButton.disabled = busy;
    this.root.classList.toggle("busy", busy);
  }
}

function shortArguments(json) {
  if (!json) return "";
  const compact = json.replace(/\s+/g, " ");
  return compact.length > 160 ? `${compact.slice(0, 157)}…` : compact;
}
