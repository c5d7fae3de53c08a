// Chat page: streams /v1/chat/completions and lists the sources of each answer.
// Every piece of server text is inserted with textContent, never as HTML.
"use strict";

const conversation = document.getElementById("conversation");
const form = document.getElementById("ask");
const question = document.getElementById("question");
const send = document.getElementById("send");
const statusLine = document.getElementById("status");
const history = [];
// The page lives at <prefix>/ui/; the API is beside it, under the same prefix.
const api = (path) => new URL(`../${path}`, window.location.href).href;
const KEY_ITEM = "ja-rag-serve-api-key";

// POST with the API key this tab was given, asking for one when the server wants it.
async function post(path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(api(path), { method: "POST", headers, body: JSON.stringify(body) });
    if (response.status !== 401 || attempt > 0) return response;
    const entered = window.prompt("このサーバーは API キーを必要とします。キーを入力してください:");
    if (!entered) return response;
    sessionStorage.setItem(KEY_ITEM, entered.trim());
  }
  throw new Error("unreachable");
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function safeUrl(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

// The answer with its [n] markers turned into links to the matching source.
function renderAnswer(target, text, turnId) {
  target.replaceChildren();
  const marker = /\[(\d+)\]/g;
  let last = 0;
  for (const match of text.matchAll(marker)) {
    target.append(document.createTextNode(text.slice(last, match.index)));
    const link = element("a", "citation", `[${match[1]}]`);
    link.href = `#${turnId}-source-${match[1]}`;
    target.append(link);
    last = match.index + match[0].length;
  }
  target.append(document.createTextNode(text.slice(last)));
}

function renderSources(list, sources, turnId) {
  list.replaceChildren();
  for (const source of sources) {
    const item = element("li", source.cited ? "cited" : "");
    item.id = `${turnId}-source-${source.index}`;
    item.append(element("strong", "", `[${source.index}] `));
    const href = source.url ? safeUrl(source.url) : null;
    if (href) {
      const link = element("a", "", source.title);
      link.href = href;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      item.append(link);
    } else {
      item.append(element("span", "", source.title));
    }
    const relevance = source.relevance == null ? "" : ` 関連度 ${source.relevance.toFixed(2)}`;
    item.append(element("span", "meta", relevance));
    item.append(element("span", "passage", source.text));
    list.append(item);
  }
}

async function ask(text) {
  const turnId = `turn-${history.length}`;
  const turn = element("section", "turn");
  turn.append(element("div", "user", text));
  const answer = element("div", "answer");
  const sources = element("ol", "sources");
  turn.append(answer, sources);
  conversation.append(turn);
  history.push({ role: "user", content: text });

  const response = await post("v1/chat/completions", {
    model: "ja-rag",
    messages: history,
    stream: true,
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    history.pop();
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let content = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const payload = event.slice(6);
      if (payload === "[DONE]") continue;
      const chunk = JSON.parse(payload);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices && chunk.choices[0] ? chunk.choices[0].delta : {};
      if (delta.content) {
        content += delta.content;
        renderAnswer(answer, content, turnId);
      }
      if (chunk.sources) renderSources(sources, chunk.sources, turnId);
      if (chunk.notice) turn.append(element("p", "notice", chunk.notice));
    }
  }
  history.push({ role: "assistant", content });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  question.value = "";
  send.disabled = true;
  statusLine.textContent = "";
  try {
    await ask(text);
  } catch (error) {
    statusLine.textContent = `エラー: ${error.message}`;
  } finally {
    send.disabled = false;
    question.focus();
  }
});

question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

async function checkHealth() {
  const badge = document.getElementById("health");
  try {
    const body = await (await fetch(api("healthz"))).json();
    badge.textContent = body.status === "ok" ? "稼働中" : "一部停止";
    badge.className = `health ${body.status === "ok" ? "ok" : "down"}`;
  } catch {
    badge.textContent = "接続できません";
    badge.className = "health down";
  }
}

checkHealth();
