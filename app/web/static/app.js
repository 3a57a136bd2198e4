// sandchat web: the page's script. Plain JavaScript, no build step, no inline code (the
// Content-Security-Policy allows scripts from this origin only).
//
// Plugin text reaches the page only as text (textContent) or, for a finished reply, as
// HTML the server rendered and sanitised with an allow-list; links in it are checked
// again here. The server's NDJSON reply stream is described in app/web/webchat.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { current: "", busy: false };

async function post(path, body) {
  return fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
}

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (!response.ok) throw new Error((await response.text()).trim());
  return response.json();
}

function scrollDown() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function addLine(kind, text) {
  const div = document.createElement("div");
  div.className = "line " + kind;
  div.textContent = text;
  $("messages").appendChild(div);
  scrollDown();
  return div;
}

function addMessage(role, who) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  const body = document.createElement("div");
  body.className = "text";
  div.append(label, body);
  $("messages").appendChild(div);
  scrollDown();
  return body;
}

// A finished reply: the server's sanitised HTML, links checked once more, a copy button per code block.
function showReply(body, html) {
  body.innerHTML = html;
  for (const link of body.querySelectorAll("a")) {
    const href = link.getAttribute("href") || "";
    if (!/^(https?:|mailto:)/i.test(href)) link.removeAttribute("href");
    link.rel = "noopener noreferrer";
    link.target = "_blank";
  }
  for (const pre of body.querySelectorAll("pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.addEventListener("click", () => {
      const code = pre.querySelector("code");
      navigator.clipboard.writeText(code ? code.textContent : pre.textContent).then(
        () => { button.textContent = "Copied"; },
        () => { button.textContent = "Copy failed"; },
      );
    });
    pre.appendChild(button);
  }
}

function showEvents(events) {
  for (const event of events || []) {
    if (event.type === "notice" || event.type === "failure" || event.type === "aside") addLine(event.type, event.line);
  }
}

function setBusy(busy) {
  state.busy = busy;
  $("stop").disabled = !busy;
  $("send").disabled = busy;
  $("plugin").disabled = busy;
}

async function loadPlugins() {
  const data = await getJSON("/api/plugins");
  state.current = data.current;
  const select = $("plugin");
  select.replaceChildren();
  for (const plugin of data.plugins) {
    const option = document.createElement("option");
    option.value = plugin.name;
    option.textContent = `${plugin.name} — ${plugin.state}${plugin.why}`;
    option.title = plugin.description;
    option.dataset.state = plugin.state;
    option.selected = plugin.name === data.current;
    select.appendChild(option);
  }
}

async function loadConversations() {
  const data = await getJSON("/api/conversations");
  const list = $("conversations");
  list.replaceChildren();
  for (const conversation of data.conversations) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const when = new Date(conversation.ts * 1000).toLocaleString();
    button.textContent = `${conversation.first || "(empty)"} · ${conversation.exchanges} · ${when}`;
    button.dataset.id = conversation.id;
    button.addEventListener("click", () => reopen(conversation.id));
    item.appendChild(button);
    list.appendChild(item);
  }
}

async function loadTokens() {
  try {
    const data = await getJSON("/api/tokens");
    $("tokens").textContent = data.text;
  } catch (error) {
    $("tokens").textContent = String(error.message || error);
  }
}

function showConversation(messages) {
  $("messages").replaceChildren();
  for (const message of messages) {
    if (message.role === "user") addMessage("user", "you").textContent = message.text;
    else showReply(addMessage("assistant", message.plugin || "assistant"), message.html);
  }
}

async function reopen(id) {
  if (state.busy) return;
  const response = await post("/api/open", { id });
  if (!response.ok) { addLine("failure", (await response.text()).trim()); return; }
  const data = await response.json();
  showConversation(data.messages);
  $("system").value = data.system;
  showEvents(data.events);
  loadTokens();
}

function askGrant(event) {
  $("grant-text").textContent = event.text;
  $("grant-file").textContent = event.file;
  const what = $("grant-what");
  what.replaceChildren();
  for (const endpoint of event.network) {
    const item = document.createElement("li");
    item.textContent = `network: ${endpoint}`;
    what.appendChild(item);
  }
  for (const variable of event.env) {
    const item = document.createElement("li");
    item.textContent = `environment variable: ${variable}`;
    what.appendChild(item);
  }
  const dialog = $("grant");
  dialog.returnValue = "";
  dialog.addEventListener("close", () => {
    post("/api/grant", { id: event.id, yes: dialog.returnValue === "yes" });
  }, { once: true });
  dialog.showModal();
}

function handle(event, reply) {
  switch (event.type) {
    case "waiting": $("status").textContent = event.label; break;
    case "chunk":
      $("status").textContent = "";
      reply.pending.push(event.text);
      if (!reply.frame) reply.frame = requestAnimationFrame(() => flush(reply));
      break;
    case "ended":
      flush(reply);
      reply.ended = true;
      reply.body.parentElement.classList.remove("streaming");
      if (event.html.trim()) showReply(reply.body, event.html);
      else reply.body.parentElement.remove();
      if (event.cancelled) addLine("aside mark", "⏹ [cancelled]");
      else if (event.incomplete) addLine("aside mark", "⚠ [incomplete]");
      break;
    case "notice": case "failure": case "aside": addLine(event.type, event.line); break;
    case "grant": askGrant(event); break;
    default: break;
  }
}

// A reply may come as thousands of tiny chunks: they are shown once per frame, as one
// new text node, so the work stays linear in the reply's length (not one relayout each).
function flush(reply) {
  if (reply.frame) cancelAnimationFrame(reply.frame);
  reply.frame = 0;
  if (!reply.pending.length) return;
  reply.body.append(reply.pending.join(""));
  reply.pending = [];
  scrollDown();
}

async function send(text) {
  setBusy(true);
  addMessage("user", "you").textContent = text;
  const reply = { body: addMessage("assistant", state.current), ended: false, pending: [], frame: 0 };
  reply.body.parentElement.classList.add("streaming");
  try {
    const response = await post("/api/chat", { text });
    if (!response.ok) {
      reply.body.parentElement.remove();
      addLine("failure", (await response.text()).trim());
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const lines = (buffered + decoder.decode(value, { stream: true })).split("\n");
      buffered = lines.pop();  // the part after the last newline: a line still coming
      for (const line of lines) if (line.trim()) handle(JSON.parse(line), reply);
    }
  } catch (error) {
    addLine("failure", `the connection to sandchat broke: ${error.message || error}`);
  } finally {
    flush(reply);
    if (!reply.ended && !reply.body.textContent) reply.body.parentElement.remove();
    $("status").textContent = "";
    setBusy(false);
    loadPlugins();
    loadConversations();
    loadTokens();
  }
}

async function switchPlugin(name) {
  $("plugin").disabled = true;
  $("status").textContent = `starting ${name}…`;
  try {
    const response = await post("/api/switch", { name });
    if (!response.ok) { addLine("failure", (await response.text()).trim()); return; }
    const data = await response.json();
    showEvents(data.events);
  } finally {
    $("status").textContent = "";
    $("plugin").disabled = false;
    await loadPlugins();
    loadTokens();
  }
}

async function showHealth() {
  const panel = $("health-panel");
  panel.hidden = false;
  $("health").textContent = "checking plugins…";
  try {
    const data = await getJSON("/api/health");
    $("health").textContent = data.text;
  } catch (error) {
    $("health").textContent = String(error.message || error);
  }
  loadPlugins();
}

function wire() {
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value;
    if (!text.trim() || state.busy) return;
    $("message").value = "";
    send(text);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => post("/api/stop"));
  $("plugin").addEventListener("change", (event) => switchPlugin(event.target.value));
  $("new").addEventListener("click", async () => {
    const response = await post("/api/new");
    if (!response.ok) { addLine("failure", (await response.text()).trim()); return; }
    $("messages").replaceChildren();
    showEvents((await response.json()).events);
    loadTokens();
  });
  $("system-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await post("/api/system", { text: $("system").value });
    if (!response.ok) { addLine("failure", (await response.text()).trim()); return; }
    showEvents((await response.json()).events);
    loadTokens();
  });
  $("health-button").addEventListener("click", showHealth);
}

async function start() {
  wire();
  const current = await getJSON("/api/state");
  $("system").value = current.system;
  showConversation(current.messages);
  await Promise.all([loadPlugins(), loadConversations()]);
  loadTokens();
  // The states change as plugins start, fail or recover: the list follows, unless the user is choosing in it.
  setInterval(() => {
    if (!state.busy && document.activeElement !== $("plugin")) loadPlugins();
  }, 2000);
  document.body.dataset.ready = "1"; // a readiness signal: the page has its plugins, conversation and history
}

start().catch((error) => addLine("failure", `sandchat web could not load: ${error.message || error}`));
