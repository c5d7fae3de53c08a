// The chat page: streams /v1/chat/completions, renders answers (Markdown an LLM may
// write, through the small renderer below, which escapes every piece of text before it
// builds any markup), links citations [n] to a sources panel, keeps the conversation in
// localStorage. Server text outside the answer is inserted with textContent only.
"use strict";

const STORE = {
  conversation: "ja-rag-serve-conversation",
  settings: "ja-rag-serve-settings",
  lang: "ja-rag-serve-lang",
};
const KEY_ITEM = "ja-rag-serve-api-key";
const MAX_TURNS = 50;
// Labels of the reranker's relevance (a calibrated 0..1 probability); docs/chat-page.md
// says how these thresholds were chosen.
const RELEVANCE_HIGH = 0.3;
const RELEVANCE_MEDIUM = 0.05;
const HEALTH_POLL_MS = { ok: 15000, other: 3000 };

const TEXT = {
  ja: {
    skip: "質問の入力へ移動",
    newChat: "新しい会話",
    settings: "設定",
    knowledgeBase: "ナレッジベース",
    passages: "参照する文書の数",
    serverDefault: "空欄: サーバーの既定値",
    temperature: "温度 (temperature)",
    temperatureHint: "0〜2。空欄: サーバーの既定値",
    intro: "登録された文書をもとに、出典つきで答えます。",
    example: "例:",
    questionLabel: "質問",
    placeholder: "質問を入力してください",
    send: "送信",
    stop: "停止",
    keys: "Enter で送信、Shift+Enter で改行、Esc で停止",
    sources: "出典",
    close: "閉じる",
    you: "質問",
    answer: "回答",
    thinking: "検索して回答を作成しています…",
    copy: "コピー",
    copied: "コピーしました",
    copyFailed: "コピーできませんでした",
    retry: "再試行",
    stopped: "停止しました。",
    emptyQuestion: "質問を入力してください。",
    checking: "確認中…",
    ready: "稼働中",
    starting: "起動中…",
    down: "一部停止",
    unreachable: "接続できません",
    bannerStarting: "サーバーを起動しています。準備ができるまでお待ちください（準備中: {stages}）。",
    bannerDown: "一部のステージが停止しています（{stages}）。回答が制限されることがあります。",
    bannerUnreachable: "サーバーに接続できません。ネットワークとサーバーを確認してください。",
    degradedGenerator: "回答を生成できませんでした。質問に対して見つかった出典だけを表示します。",
    degradedReranker: "再ランキングを使わずに回答しました（出典は検索順です）。",
    noticeDetail: "詳細: {notice}",
    errorHttp: "エラー (HTTP {status}): {message}",
    errorRetryAfter: "{seconds} 秒ほど後に再試行してください。",
    errorNetwork: "サーバーに接続できませんでした。",
    errorStream: "回答の途中でエラーが起きました: {message}",
    apiKeyPrompt: "このサーバーは API キーを必要とします。キーを入力してください:",
    relevance: "関連度: {level}",
    high: "高",
    medium: "中",
    cited: "引用",
    openSource: "出典 [{n}]: {title}",
    noSources: "出典はありません。",
    defaultKb: "{name}（既定）",
    switchLang: "Switch to English",
    langButton: "English",
    langButtonLang: "en",
    conversationLabel: "会話",
    done: "回答が完了しました。",
  },
  en: {
    skip: "Skip to the question",
    newChat: "New conversation",
    settings: "Settings",
    knowledgeBase: "Knowledge base",
    passages: "Passages to use",
    serverDefault: "Empty: the server's default",
    temperature: "Temperature",
    temperatureHint: "0 to 2. Empty: the server's default",
    intro: "Answers from the indexed documents, with their sources.",
    example: "Try:",
    questionLabel: "Question",
    placeholder: "Ask a question",
    send: "Send",
    stop: "Stop",
    keys: "Enter sends, Shift+Enter adds a line, Esc stops",
    sources: "Sources",
    close: "Close",
    you: "Question",
    answer: "Answer",
    thinking: "Searching and writing the answer…",
    copy: "Copy",
    copied: "Copied",
    copyFailed: "Could not copy",
    retry: "Retry",
    stopped: "Stopped.",
    emptyQuestion: "Please type a question.",
    checking: "Checking…",
    ready: "Ready",
    starting: "Starting…",
    down: "Partly down",
    unreachable: "Unreachable",
    bannerStarting: "The server is starting. Please wait until it is ready (not ready yet: {stages}).",
    bannerDown: "Some stages are down ({stages}). Answers may be limited.",
    bannerUnreachable: "The server cannot be reached. Check the network and the server.",
    degradedGenerator: "No answer could be generated. Only the sources found for the question are shown.",
    degradedReranker: "Answered without reranking (sources in search order).",
    noticeDetail: "Details: {notice}",
    errorHttp: "Error (HTTP {status}): {message}",
    errorRetryAfter: "Please retry in about {seconds} s.",
    errorNetwork: "The server could not be reached.",
    errorStream: "The answer stopped with an error: {message}",
    apiKeyPrompt: "This server needs an API key. Please enter your key:",
    relevance: "Relevance: {level}",
    high: "high",
    medium: "medium",
    cited: "cited",
    openSource: "Source [{n}]: {title}",
    noSources: "No sources.",
    defaultKb: "{name} (default)",
    switchLang: "日本語に切り替え",
    langButton: "日本語",
    langButtonLang: "ja",
    conversationLabel: "Conversation",
    done: "The answer is complete.",
  },
};

const $ = (id) => document.getElementById(id);
const els = {
  conversation: $("conversation"),
  empty: $("empty"),
  form: $("ask"),
  question: $("question"),
  send: $("send"),
  stop: $("stop"),
  askError: $("ask-error"),
  status: $("status"),
  banner: $("banner"),
  health: $("health"),
  lang: $("lang"),
  newChat: $("new-chat"),
  settingsToggle: $("settings-toggle"),
  settings: $("settings"),
  kbField: $("kb-field"),
  kb: $("kb"),
  topN: $("top-n"),
  temperature: $("temperature"),
  panel: $("sources-panel"),
  sourcesList: $("sources-list"),
  closeSources: $("close-sources"),
};

function load(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || "null");
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the page still works, without memory.
  }
}

const state = {
  lang: load(STORE.lang, "ja") === "en" ? "en" : "ja",
  turns: (load(STORE.conversation, { turns: [] }).turns || []).filter((t) => t && t.question),
  settings: Object.assign({ model: "", topN: "", temperature: "" }, load(STORE.settings, {})),
  controller: null,
  streamingTurn: null,
  health: "checking",
  healthStages: [],
  everReady: false,
  ragModels: [],
  panelTurn: null,
  panelReturnFocus: null,
};

function t(key, values) {
  const template = TEXT[state.lang][key] ?? TEXT.ja[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => (values && name in values ? values[name] : ""));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function announce(text) {
  els.status.textContent = "";
  window.setTimeout(() => {
    els.status.textContent = text;
  }, 50);
}

// ---------------------------------------------------------------------------------------
// Markdown: the answer text is escaped piece by piece; only the tags below are made.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function safeHref(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return ["http:", "https:", "mailto:"].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

// Inline spans, left to right: code, [text](url), citation [n], **strong**, *em*, bare URL.
const INLINE =
  /(`+)([^`\n]+?)\1|\[([^\]\n]+)\]\(([^()\s]+)\)|\[(\d{1,3})\]|\*\*([^*\n]+?)\*\*|\*([^*\s](?:[^*\n]*?[^*\s])?)\*|(https?:\/\/[^\s<>()[\]「」『』、。！？"']+)/g;

function inline(text, ctx) {
  let out = "";
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    out += escapeHtml(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[1] !== undefined) {
      out += `<code>${escapeHtml(m[2])}</code>`;
    } else if (m[3] !== undefined) {
      const href = safeHref(m[4]);
      const label = inline(m[3], ctx);
      out += href
        ? `<a href="${escapeHtml(href)}" rel="noopener noreferrer" target="_blank">${label}</a>`
        : label;
    } else if (m[5] !== undefined) {
      const n = Number(m[5]);
      out += `<a class="citation" href="#src-${ctx.turn}-${n}" data-turn="${ctx.turn}" data-source="${n}">[${n}]</a>`;
    } else if (m[6] !== undefined) {
      out += `<strong>${inline(m[6], ctx)}</strong>`;
    } else if (m[7] !== undefined) {
      out += `<em>${inline(m[7], ctx)}</em>`;
    } else {
      const href = safeHref(m[8]);
      out += href
        ? `<a href="${escapeHtml(href)}" rel="noopener noreferrer" target="_blank">${escapeHtml(m[8])}</a>`
        : escapeHtml(m[8]);
    }
  }
  return out + escapeHtml(text.slice(last));
}

const LIST_ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;

// Blocks: fenced code, ATX headings (shown two levels down, under the page's h1 and h2),
// rules, lists, quotes and paragraphs (a newline inside one is a line break).
function renderMarkdown(source, ctx) {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let html = "";
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) html += `<p>${paragraph.map((l) => inline(l, ctx)).join("<br>")}</p>`;
    paragraph = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = /^\s{0,3}(```+|~~~+)\s*([\w+-]*)/.exec(line))) {
      flush();
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i++;
      const lang = m[2] ? ` data-lang="${escapeHtml(m[2])}"` : "";
      html += `<pre tabindex="0"><code${lang}>${escapeHtml(body.join("\n"))}</code></pre>`;
    } else if ((m = /^\s{0,3}(#{1,6})\s+(.*?)(\s+#+)?\s*$/.exec(line))) {
      flush();
      const level = Math.min(m[1].length + 2, 6);
      html += `<h${level}>${inline(m[2], ctx)}</h${level}>`;
      i++;
    } else if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      html += "<hr>";
      i++;
    } else if ((m = LIST_ITEM.exec(line))) {
      flush();
      const ordered = /\d/.test(m[1]);
      const start = ordered ? parseInt(m[1], 10) : 1;
      const items = [];
      while (i < lines.length) {
        const item = LIST_ITEM.exec(lines[i]);
        if (item && /\d/.test(item[1]) === ordered) {
          items.push([item[2]]);
        } else if (items.length && /^\s{2,}\S/.test(lines[i]) && !item) {
          items[items.length - 1].push(lines[i].trim());
        } else {
          break;
        }
        i++;
      }
      const tag = ordered ? "ol" : "ul";
      const startAttr = ordered && start !== 1 ? ` start="${start}"` : "";
      html += `<${tag}${startAttr}>`;
      for (const item of items) html += `<li>${item.map((l) => inline(l, ctx)).join("<br>")}</li>`;
      html += `</${tag}>`;
    } else if (/^\s{0,3}>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s{0,3}>/.test(lines[i])) {
        quoted.push(lines[i].replace(/^\s{0,3}>\s?/, ""));
        i++;
      }
      html += `<blockquote>${renderMarkdown(quoted.join("\n"), ctx)}</blockquote>`;
    } else if (!line.trim()) {
      flush();
      i++;
    } else {
      paragraph.push(line);
      i++;
    }
  }
  flush();
  return html;
}

// ---------------------------------------------------------------------------------------
// Sources: a readable relevance label and the passage with the part the answer used marked.

// Below RELEVANCE_MEDIUM no label: "low" was beside a passage that answers the question
// too often (14 % of them on the demo questions) to tell a reader anything.
function relevanceLevel(relevance) {
  if (relevance === null || relevance === undefined) return null;
  if (relevance >= RELEVANCE_HIGH) return "high";
  if (relevance >= RELEVANCE_MEDIUM) return "medium";
  return null;
}

// The longest run of characters that `needle` and `haystack` share: [start in haystack, length].
function longestCommon(needle, haystack) {
  const a = needle.slice(0, 1500);
  const b = haystack.slice(0, 4000);
  let best = 0;
  let end = 0;
  let previous = new Uint16Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    const current = new Uint16Array(b.length + 1);
    const ch = a.charCodeAt(i - 1);
    for (let j = 1; j <= b.length; j++) {
      if (ch === b.charCodeAt(j - 1)) {
        const run = previous[j - 1] + 1;
        current[j] = run;
        if (run > best) {
          best = run;
          end = j;
        }
      }
    }
    previous = current;
  }
  return [end - best, best];
}

// The sentences of the answer that cite [n] (or the question, for a passage the answer
// does not cite), markers and Markdown signs left out.
function claimsFor(turn, n) {
  const marker = `[${n}]`;
  const sentences = (turn.answer || "").match(/[^。．！？!?\n]+[。．！？!?\n]*(?:\s*\[\d+\])*/g) || [];
  const citing = sentences.filter((s) => s.includes(marker));
  const claims = citing.length ? citing : [turn.question];
  return claims.map((c) => c.replace(/\[\d+\]/g, "").replace(/[*_`#>]/g, "").trim());
}

// Ranges [start, end) of the passage that the claims repeat, merged and sorted.
function matchedRanges(claims, text) {
  const ranges = [];
  for (const claim of claims) {
    const [start, length] = longestCommon(claim, text);
    if (length >= Math.min(4, Math.max(2, claim.length))) ranges.push([start, start + length]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && range[0] <= last[1]) last[1] = Math.max(last[1], range[1]);
    else merged.push(range);
  }
  return merged;
}

// The passage around the part the answer used, that part marked.
function excerpt(source, turn) {
  const text = source.text || "";
  const node = element("p", "excerpt");
  const ranges = matchedRanges(claimsFor(turn, source.index), text);
  if (!ranges.length) {
    node.textContent = text.length > 300 ? `${text.slice(0, 300)}…` : text;
    return node;
  }
  const from = Math.max(0, ranges[0][0] - 100);
  const to = Math.min(text.length, Math.max(ranges[ranges.length - 1][1] + 160, from + 300));
  let at = from;
  if (from > 0) node.append(document.createTextNode("…"));
  for (const [start, end] of ranges) {
    if (start >= to) break;
    node.append(document.createTextNode(text.slice(at, start)));
    node.append(element("mark", "", text.slice(start, Math.min(end, to))));
    at = Math.min(end, to);
  }
  node.append(document.createTextNode(text.slice(at, to) + (to < text.length ? "…" : "")));
  return node;
}

function sourceItem(source, turn, selected) {
  const item = element("li", source.cited ? "source cited" : "source");
  item.id = `src-${turn.id}-${source.index}`;
  item.tabIndex = -1;
  if (selected) {
    item.classList.add("selected");
    item.setAttribute("aria-current", "true");
  }
  const head = element("div", "source-head");
  head.append(element("span", "number", `[${source.index}]`));
  const href = source.url ? safeHref(source.url) : null;
  const title = source.title || source.doc_id || source.passage_id;
  if (href && /^https?:/.test(href)) {
    const link = element("a", "title", title);
    link.href = href;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    head.append(link);
  } else {
    head.append(element("span", "title", title));
  }
  const level = relevanceLevel(source.relevance);
  if (level) head.append(element("span", `badge level-${level}`, t("relevance", { level: t(level) })));
  if (source.cited) head.append(element("span", "badge cited-badge", t("cited")));
  item.append(head, excerpt(source, turn));
  if (href && /^https?:/.test(href)) item.append(element("p", "url", href));
  return item;
}

// Shows the sources of a turn in the panel, source n selected; `move` takes the focus to it.
function openSources(turnId, n, returnFocus, move = true) {
  const turn = state.turns.find((x) => x.id === turnId);
  if (!turn) return;
  state.panelTurn = turnId;
  if (move) state.panelReturnFocus = returnFocus || null;
  els.sourcesList.replaceChildren();
  if (!turn.sources || !turn.sources.length) {
    els.sourcesList.append(element("li", "source", t("noSources")));
  }
  for (const source of turn.sources || []) {
    els.sourcesList.append(sourceItem(source, turn, source.index === n));
  }
  els.panel.hidden = false;
  document.body.classList.add("panel-open");
  if (!move) return;
  const target = n ? $(`src-${turnId}-${n}`) : null;
  (target || els.panel).focus({ preventScroll: true });
  (target || els.panel).scrollIntoView({ block: "nearest" });
}

function closeSources() {
  els.panel.hidden = true;
  document.body.classList.remove("panel-open");
  state.panelTurn = null;
  if (state.panelReturnFocus && document.contains(state.panelReturnFocus)) {
    state.panelReturnFocus.focus();
  }
  state.panelReturnFocus = null;
}

// ---------------------------------------------------------------------------------------
// Turns

function turnNode(turn) {
  let node = $(`turn-${turn.id}`);
  if (!node) {
    node = element("article", "turn");
    node.id = `turn-${turn.id}`;
    els.conversation.append(node);
  }
  return node;
}

function renderTurn(turn) {
  const node = turnNode(turn);
  const streaming = state.streamingTurn === turn;
  node.replaceChildren();
  node.setAttribute("aria-busy", streaming ? "true" : "false");

  const question = element("div", "question");
  question.append(element("span", "visually-hidden", `${t("you")}: `));
  question.append(element("p", "", turn.question));
  node.append(question);

  const answer = element("div", "answer");
  answer.append(element("span", "visually-hidden", `${t("answer")}: `));
  const body = element("div", "answer-body");
  // Without the generator the answer's text is the server's placeholder: the notice
  // below says it better.
  const generated = !(turn.degraded || []).includes("generator");
  if (turn.answer && generated) {
    body.innerHTML = renderMarkdown(turn.answer, { turn: turn.id });
  } else if (streaming) {
    body.append(element("p", "thinking", t("thinking")));
  }
  answer.append(body);
  node.append(answer);

  const degraded = turn.degraded || [];
  if (degraded.length) {
    const notice = element("div", "notice");
    if (degraded.includes("generator")) notice.append(element("p", "", t("degradedGenerator")));
    if (degraded.includes("reranker")) notice.append(element("p", "", t("degradedReranker")));
    if (turn.notice) notice.append(element("p", "detail", t("noticeDetail", { notice: turn.notice })));
    node.append(notice);
  }
  if (turn.stopped) node.append(element("p", "stopped", t("stopped")));
  if (turn.error) {
    const error = element("div", "error");
    error.setAttribute("role", "alert");
    error.append(element("p", "", turn.error));
    node.append(error);
  }

  if (turn.sources && turn.sources.length) {
    const list = element("ul", "turn-sources");
    list.setAttribute("aria-label", t("sources"));
    for (const source of turn.sources) {
      const item = element("li");
      const button = element("button", source.cited ? "chip cited" : "chip");
      button.type = "button";
      button.dataset.turn = turn.id;
      button.dataset.source = String(source.index);
      button.textContent = t("openSource", { n: source.index, title: source.title || source.doc_id });
      item.append(button);
      list.append(item);
    }
    node.append(list);
  }

  if (!streaming) {
    const actions = element("div", "turn-actions");
    if (turn.answer && generated) {
      const copy = element("button", "copy", t("copy"));
      copy.type = "button";
      copy.dataset.action = "copy";
      copy.dataset.turn = turn.id;
      actions.append(copy);
    }
    if (turn === state.turns[state.turns.length - 1]) {
      const retry = element("button", "retry", t("retry"));
      retry.type = "button";
      retry.dataset.action = "retry";
      retry.dataset.turn = turn.id;
      actions.append(retry);
    }
    node.append(actions);
  }
  if (state.panelTurn === turn.id && !els.panel.hidden) {
    const selected = els.sourcesList.querySelector(".selected");
    openSources(turn.id, selected ? Number(selected.id.split("-").pop()) : 0, null, false);
  }
}

function renderAll() {
  els.conversation.replaceChildren();
  for (const turn of state.turns) renderTurn(turn);
  els.empty.hidden = state.turns.length > 0;
}

function persist() {
  const turns = state.turns.slice(-MAX_TURNS).map((turn) => ({ ...turn }));
  save(STORE.conversation, { version: 1, turns });
}

// The conversation sent with a question: earlier turns that got an answer.
function historyBefore(turn) {
  const messages = [];
  for (const earlier of state.turns) {
    if (earlier === turn) break;
    const usable =
      earlier.answer && !earlier.error && !(earlier.degraded || []).includes("generator");
    if (!usable) continue;
    messages.push({ role: "user", content: earlier.question });
    messages.push({ role: "assistant", content: earlier.answer });
  }
  messages.push({ role: "user", content: turn.question });
  return messages;
}

// ---------------------------------------------------------------------------------------
// Talking to the server

// The page lives at <prefix>/ui/; the API is beside it, under the same prefix.
const api = (path) => new URL(`../${path}`, window.location.href).href;

function authHeaders() {
  const key = sessionStorage.getItem(KEY_ITEM);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// POST with the API key this tab was given, asking for one when the server wants it.
async function post(path, body, signal) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = { "Content-Type": "application/json", ...authHeaders() };
    const response = await fetch(api(path), {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal,
    });
    if (response.status !== 401 || attempt > 0) return response;
    const entered = window.prompt(t("apiKeyPrompt"));
    if (!entered) return response;
    sessionStorage.setItem(KEY_ITEM, entered.trim());
    loadModels();
  }
  throw new Error("unreachable");
}

function requestBody(turn) {
  const body = { messages: historyBefore(turn), stream: true };
  if (state.settings.model) body.model = state.settings.model;
  const topN = parseInt(state.settings.topN, 10);
  if (topN >= 1 && topN <= 100) body.rag = { top_n: topN };
  const temperature = parseFloat(state.settings.temperature);
  if (temperature >= 0 && temperature <= 2) body.temperature = temperature;
  return body;
}

async function errorMessage(response) {
  const body = await response.json().catch(() => null);
  const message = (body && body.error && body.error.message) || response.statusText || "";
  let text = t("errorHttp", { status: response.status, message });
  const retryAfter = response.headers.get("Retry-After");
  if (retryAfter) text += ` ${t("errorRetryAfter", { seconds: retryAfter })}`;
  return text;
}

let paintScheduled = false;
function schedulePaint(turn) {
  if (paintScheduled) return;
  paintScheduled = true;
  window.requestAnimationFrame(() => {
    paintScheduled = false;
    renderTurn(turn);
    followBottom();
  });
}

function followBottom() {
  const slack = window.innerHeight * 0.5;
  const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - slack;
  if (atBottom) window.scrollTo({ top: document.body.scrollHeight });
}

async function stream(turn, response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) {
        turn.error = t("errorStream", { message: chunk.error.message || "" });
        continue;
      }
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) {
        turn.answer += choice.delta.content;
        schedulePaint(turn);
      }
      if (chunk.sources) turn.sources = chunk.sources;
      if (chunk.degraded) turn.degraded = chunk.degraded;
      if (chunk.notice) turn.notice = chunk.notice;
    }
  }
}

async function run(turn) {
  const controller = new AbortController();
  state.controller = controller;
  state.streamingTurn = turn;
  setBusy(true);
  renderAll();
  try {
    const response = await post("v1/chat/completions", requestBody(turn), controller.signal);
    if (!response.ok) {
      turn.error = await errorMessage(response);
    } else {
      await stream(turn, response);
    }
  } catch (error) {
    if (controller.signal.aborted) {
      turn.stopped = true;
    } else {
      turn.error = error instanceof TypeError ? t("errorNetwork") : String(error.message || error);
    }
  } finally {
    state.controller = null;
    state.streamingTurn = null;
    setBusy(false);
    renderAll();
    persist();
    // The button that started it (retry) was redrawn: the focus goes back to the question.
    if (!document.activeElement || document.activeElement === document.body) els.question.focus();
    announce(turn.error || (turn.stopped ? t("stopped") : t("done")));
  }
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.hidden = !busy;
  els.form.setAttribute("aria-busy", busy ? "true" : "false");
}

function newTurn(question) {
  const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  return { id, question, answer: "", sources: [], degraded: [], notice: null, error: null, stopped: false };
}

function ask(question) {
  if (state.controller) return;
  const turn = newTurn(question);
  state.turns.push(turn);
  run(turn);
}

function stop() {
  if (state.controller) state.controller.abort();
}

function retry(turnId) {
  if (state.controller) return;
  const index = state.turns.findIndex((x) => x.id === turnId);
  if (index < 0) return;
  const [old] = state.turns.splice(index, 1);
  const turn = newTurn(old.question);
  state.turns.splice(index, 0, turn);
  run(turn);
}

async function copy(turnId, button) {
  const turn = state.turns.find((x) => x.id === turnId);
  if (!turn) return;
  let ok = false;
  try {
    await navigator.clipboard.writeText(turn.answer);
    ok = true;
  } catch {
    const area = element("textarea");
    area.value = turn.answer;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  button.textContent = ok ? t("copied") : t("copyFailed");
  announce(button.textContent);
  window.setTimeout(() => {
    if (document.contains(button)) button.textContent = t("copy");
  }, 2000);
}

function newConversation() {
  stop();
  state.turns = [];
  try {
    localStorage.removeItem(STORE.conversation);
  } catch {
    // Nothing kept.
  }
  closeSources();
  renderAll();
  els.question.focus();
}

// ---------------------------------------------------------------------------------------
// Health, models, settings, language

async function checkHealth() {
  let next = HEALTH_POLL_MS.other;
  try {
    const response = await fetch(api("healthz"), { cache: "no-store" });
    const body = await response.json().catch(() => null);
    const stages = body && body.stages ? body.stages : {};
    const down = Object.keys(stages).filter((name) => stages[name].status !== "ok");
    if (response.ok && body && body.status === "ok") {
      state.everReady = true;
      setHealth("ready", []);
      next = HEALTH_POLL_MS.ok;
    } else {
      setHealth(state.everReady ? "down" : "starting", down);
    }
  } catch {
    setHealth("unreachable", []);
  }
  window.setTimeout(checkHealth, next);
}

function setHealth(health, stages) {
  const changed = health !== state.health;
  state.health = health;
  state.healthStages = stages;
  renderHealth();
  if (changed && health === "ready") loadModels();
}

function renderHealth() {
  const label = { checking: "checking", ready: "ready", starting: "starting", down: "down" };
  els.health.textContent = t(label[state.health] || "unreachable");
  els.health.dataset.state = state.health;
  const stages = state.healthStages.join(", ") || "…";
  const banner = {
    starting: t("bannerStarting", { stages }),
    down: t("bannerDown", { stages }),
    unreachable: t("bannerUnreachable"),
  }[state.health];
  els.banner.hidden = !banner;
  els.banner.dataset.state = state.health;
  els.banner.textContent = banner || "";
}

async function loadModels() {
  try {
    const response = await fetch(api("v1/models"), { headers: authHeaders() });
    if (!response.ok) return;
    const body = await response.json();
    const seen = new Set();
    state.ragModels = [];
    for (const card of body.data || []) {
      if (card.kind !== "rag") continue;
      const base = card.knowledge_base || card.id;
      if (seen.has(base)) continue;
      seen.add(base);
      state.ragModels.push(card);
    }
    renderModels();
  } catch {
    // The list is optional: the server's default model answers.
  }
}

function renderModels() {
  const models = state.ragModels;
  els.kbField.hidden = models.length < 2;
  els.kb.replaceChildren();
  models.forEach((card, i) => {
    const name = card.knowledge_base || card.id;
    const label = i === 0 ? t("defaultKb", { name }) : name;
    const option = element("option", "", card.description ? `${label}: ${card.description}` : label);
    option.value = i === 0 ? "" : card.id;
    els.kb.append(option);
  });
  // A knowledge base no longer served is forgotten once the list has been read.
  const known = models.some((card, i) => i > 0 && card.id === state.settings.model);
  if (models.length && !known) state.settings.model = "";
  els.kb.value = known ? state.settings.model : "";
}

function readSettings() {
  state.settings.model = els.kb.value;
  state.settings.topN = els.topN.value;
  state.settings.temperature = els.temperature.value;
  save(STORE.settings, state.settings);
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  els.lang.textContent = t("langButton");
  els.lang.lang = t("langButtonLang");
  els.lang.setAttribute("aria-label", t("switchLang"));
  els.conversation.setAttribute("aria-label", t("conversationLabel"));
  if (els.askError.textContent) els.askError.textContent = t("emptyQuestion");
  renderHealth();
  renderModels();
  renderAll();
  if (state.panelTurn && !els.panel.hidden) openSources(state.panelTurn, 0, null, false);
}

// ---------------------------------------------------------------------------------------
// Events

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = els.question.value.trim();
  if (!text) {
    els.askError.textContent = t("emptyQuestion");
    els.question.setAttribute("aria-invalid", "true");
    els.question.focus();
    return;
  }
  if (state.controller) return;
  els.question.value = "";
  ask(text);
});

els.question.addEventListener("input", () => {
  if (els.askError.textContent) {
    els.askError.textContent = "";
    els.question.removeAttribute("aria-invalid");
  }
});

els.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    els.form.requestSubmit();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.isComposing) return;
  if (state.controller) {
    event.preventDefault();
    stop();
  } else if (!els.panel.hidden) {
    event.preventDefault();
    closeSources();
  }
});

els.stop.addEventListener("click", stop);
els.newChat.addEventListener("click", newConversation);
els.closeSources.addEventListener("click", closeSources);

els.lang.addEventListener("click", () => {
  state.lang = state.lang === "ja" ? "en" : "ja";
  save(STORE.lang, state.lang);
  applyLanguage();
});

els.settingsToggle.addEventListener("click", () => {
  const open = els.settings.hidden;
  els.settings.hidden = !open;
  els.settingsToggle.setAttribute("aria-expanded", String(open));
});
els.settings.addEventListener("change", readSettings);
els.settings.addEventListener("submit", (event) => event.preventDefault());

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (!target) return;
  const suggestion = target.closest(".suggestion");
  if (suggestion) {
    els.question.value = suggestion.textContent;
    els.form.requestSubmit();
    return;
  }
  const opener = target.closest("a.citation, button.chip");
  if (opener) {
    event.preventDefault();
    openSources(opener.dataset.turn, Number(opener.dataset.source), opener);
    return;
  }
  const action = target.closest("button[data-action]");
  if (action && action.dataset.action === "copy") copy(action.dataset.turn, action);
  if (action && action.dataset.action === "retry") retry(action.dataset.turn);
});

els.topN.value = state.settings.topN;
els.temperature.value = state.settings.temperature;
applyLanguage();
checkHealth();
loadModels();
