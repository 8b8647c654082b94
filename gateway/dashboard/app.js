// Winnerr Live: the manager's view of their organization's calls, and one call's live view, on
// the feed protocol (docs/feed-protocol.md). Plain ES module, no build step; every value from the
// feed is written as text, never as HTML.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "winnerr.token";

// The feed's close codes, written in by the server from the protocol's own constants.
const CLOSE = __FEED_CLOSE_CODES__;

const state = {
  token: null,
  hello: null,
  socket: null,
  retry: 0,
  // Channel name -> last position seen ({epoch, offset}), to recover after a reconnect.
  positions: new Map(),
  calls: new Map(),
  presence: new Map(),
  alerts: [],
  // Recent messages (SMS, email) from leads, newest first; and the ids they travel under, so
  // that their alerts and scores do not read as calls.
  messages: [],
  messageIds: new Set(),
  openCall: null,
  transcript: new Map(),
  series: { inbound: [], outbound: [] },
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function send(message) {
  if (state.socket?.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

// ---- connection ----

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/feed?access_token=${encodeURIComponent(state.token)}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  setStatus(state.retry ? "reconnecting" : "connecting", "reconnecting");
  socket.onmessage = (message) => receive(JSON.parse(message.data));
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (event.code === CLOSE.TOKEN_EXPIRED) {
      logout(`Signed out: ${event.reason || event.code}`);
      return;
    }
    if (!state.hello && state.retry > 2) {
      logout("Could not connect with this token.");
      return;
    }
    setStatus("reconnecting", "reconnecting");
    const delay = Math.min(10_000, 500 * 2 ** state.retry++);
    setTimeout(() => state.token && connect(), delay);
  };
}

function subscribe(channel) {
  const since = state.positions.get(channel);
  send(since ? { type: "subscribe", channel, since } : { type: "subscribe", channel });
}

function receive(message) {
  switch (message.type) {
    case "hello":
      state.hello = message;
      state.retry = 0;
      setStatus("live", "online");
      $("who").textContent = `${message.user_id} · ${message.role} · ${message.org_id}`;
      subscribe("org");
      if (state.openCall) subscribe(`call:${state.openCall}`);
      break;
    case "subscribed":
      if (message.recovered === false) forget(message.channel);
      state.positions.set(message.channel, message.position);
      break;
    case "event":
      state.positions.set(message.channel, {
        epoch: state.positions.get(message.channel)?.epoch,
        offset: message.offset,
      });
      if (message.channel === "org") onOverview(message.event, message.offset);
      else if (message.channel === `call:${state.openCall}`) onCallEvent(message.event);
      break;
    case "presence_state":
      state.presence = new Map(message.members.map((m) => [m.user_id, m]));
      renderPresence();
      break;
    case "presence":
      if (message.change === "leave") state.presence.delete(message.member.user_id);
      else state.presence.set(message.member.user_id, message.member);
      renderPresence();
      break;
    case "lagged":
      // Resubscribing from the last position recovers what was dropped.
      subscribe("org");
      if (state.openCall) subscribe(`call:${state.openCall}`);
      break;
    case "error":
      console.warn("feed refused:", message.code, message.message);
      break;
  }
}

/// What a channel showed cannot be recovered: start it afresh.
function forget(channel) {
  if (channel === "org") {
    state.calls.clear();
    state.alerts = [];
    state.messages = [];
    state.messageIds.clear();
    renderCalls();
    renderAlerts();
    renderMessages();
  } else if (channel === `call:${state.openCall}`) {
    resetCallView();
  }
}

// ---- the organization ----

function onOverview(event, offset) {
  if (event.type === "message") {
    onMessage(event);
    return;
  }
  if (state.messageIds.has(event.call_id)) {
    if (event.type === "alert") addAlert(event);
    return;
  }
  let call = state.calls.get(event.call_id);
  if (!call) {
    // `from`: the stream position just before the call's first message, to replay it from.
    call = { id: event.call_id, agent: event.agent_id, lead: null, started: event.ts_ms,
             ended: false, sentiment: null, score: null, from: offset - 1 };
    state.calls.set(event.call_id, call);
  }
  switch (event.type) {
    case "call_started":
      call.lead = event.lead_id ?? null;
      call.started = event.ts_ms;
      break;
    case "transcript":
      if (event.is_final && event.sentiment && event.track === "inbound") {
        call.sentiment = event.sentiment.rolling;
      }
      break;
    case "alert":
      addAlert(event);
      break;
    case "lead_score":
      call.score = event.score;
      // A page opened mid-call learns the lead from its score.
      call.lead = call.lead ?? event.lead_id;
      break;
    case "call_ended":
      call.ended = true;
      // Ended calls stay greyed for a minute.
      setTimeout(() => { state.calls.delete(call.id); renderCalls(); }, 60_000);
      break;
  }
  renderCalls();
}

function addAlert(event) {
  state.alerts.unshift({ call: event.call_id, kind: event.alert, text: event.text,
                         keyword: event.keyword, last4: event.last4, at: event.ts_ms });
  state.alerts.length = Math.min(state.alerts.length, 30);
  renderAlerts();
}

// A message from a lead: the latest 30 are listed, with their sentiment.
function onMessage(event) {
  state.messageIds.add(event.call_id);
  state.messages.unshift({ id: event.call_id, channel: event.channel, lead: event.lead_id,
                           text: event.text, sentiment: event.sentiment?.score ?? null });
  for (const old of state.messages.splice(30)) state.messageIds.delete(old.id);
  renderMessages();
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren();
  for (const m of state.messages) {
    list.append(el("li", { "data-message": m.id },
      el("span", { class: "kind" }, m.channel === "email" ? "email" : "SMS"),
      ` · ${m.lead ?? "–"} · `, gauge(m.sentiment), " ", el("q", {}, m.text)));
  }
}

function gauge(value) {
  const span = el("span", { class: "gauge", "data-testid": "gauge" });
  if (value === null) {
    span.append("–");
    return span;
  }
  const meter = el("meter", { min: -1, max: 1, low: -0.3, high: 0.3, optimum: 1, value });
  const label = value > 0.3 ? "positive" : value < -0.3 ? "negative" : "neutral";
  span.append(meter, el("span", { class: `value ${label}` }, value.toFixed(2)));
  return span;
}

function since(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function renderCalls() {
  const body = $("calls");
  body.replaceChildren();
  const calls = [...state.calls.values()].sort((a, b) => b.started - a.started);
  for (const call of calls) {
    const row = el("tr", { class: call.ended ? "ended" : "", "data-call": call.id },
      el("td", {}, call.id.slice(-10)),
      el("td", {}, call.agent ?? "–"),
      el("td", {}, call.lead ?? "–"),
      el("td", {}, call.ended ? "ended" : since(call.started)),
      el("td", {}, gauge(call.sentiment)),
      el("td", {}, call.score ?? "–"));
    row.onclick = () => openCall(call.id);
    body.append(row);
  }
  const live = calls.filter((c) => !c.ended).length;
  $("live-count").textContent = live;
  $("no-calls").hidden = calls.length > 0;
}

function renderPresence() {
  const list = $("presence");
  list.replaceChildren();
  const members = [...state.presence.values()].sort((a, b) => a.user_id.localeCompare(b.user_id));
  for (const m of members) {
    const status = m.status === "monitoring" || m.status === "on_call"
      ? `${m.status.replace("_", " ")}${m.call_id ? ` ${m.call_id.slice(-6)}` : ""}`
      : m.status;
    list.append(el("li", { "data-user": m.user_id },
      el("span", {}, `${m.user_id} `, el("small", {}, m.role)),
      el("span", { class: `badge ${m.status}` }, status)));
  }
}

function renderAlerts() {
  const list = $("alerts");
  list.replaceChildren();
  for (const a of state.alerts) {
    const what = a.kind === "keyword" ? `said "${a.keyword}"`
      : a.kind === "do_not_call" ? `dialed ••••${a.last4}, on the do-not-call list`
      : a.kind === "sentiment_drop" ? "sentiment dropped"
      : `coaching: ${a.kind.replaceAll("_", " ")}`;
    list.append(el("li", {}, el("span", { class: "kind" }, what), ` · ${a.call.slice(-6)} · `,
      el("q", {}, a.text)));
  }
}

// ---- one call ----

function openCall(id) {
  if (state.openCall !== id) stopListening();
  if (state.openCall && state.openCall !== id) {
    send({ type: "unsubscribe", channel: `call:${state.openCall}` });
    state.positions.delete(`call:${state.openCall}`);
  }
  state.openCall = id;
  resetCallView();
  $("call-id").textContent = id;
  $("call").hidden = false;
  // Replays the call from its start, if the gateway still holds it.
  const org = state.positions.get("org");
  const from = state.calls.get(id)?.from;
  if (org && from !== undefined) state.positions.set(`call:${id}`, { epoch: org.epoch, offset: from });
  subscribe(`call:${id}`);
  send({ type: "presence", status: "monitoring", call_id: id });
}

function closeCall() {
  if (!state.openCall) return;
  stopListening();
  send({ type: "unsubscribe", channel: `call:${state.openCall}` });
  state.positions.delete(`call:${state.openCall}`);
  state.openCall = null;
  $("call").hidden = true;
  send({ type: "presence", status: $("my-status").value });
}

function resetCallView() {
  state.transcript = new Map();
  state.series = { inbound: [], outbound: [] };
  $("transcript").replaceChildren();
  $("score").textContent = "–";
  $("reasons").replaceChildren();
  $("signals").replaceChildren();
  drawSeries();
}

// The call's talk signals (`call_signals`), as a manager reads them.
function renderSignals(s) {
  const secs = (ms) => `${Math.round(ms / 1000)} s`;
  const ratio = s.agent_talk_ratio == null ? "–" : `${Math.round(s.agent_talk_ratio * 100)}%`;
  const rows = [
    ["agent's share of the talk", ratio],
    ["longest turn (agent / customer)", `${secs(s.longest_agent_turn_ms)} / ${secs(s.longest_customer_turn_ms)}`],
    ["interruptions (agent / customer)", `${s.agent_interruptions} / ${s.customer_interruptions}`],
    ["silences of 3 s+", `${s.silences}${s.silences ? ` (longest ${secs(s.longest_silence_ms)})` : ""}`],
    ["agent's questions", `${s.agent_questions}`],
  ];
  $("signals").replaceChildren(...rows.flatMap(([name, value]) =>
    [el("dt", {}, name), el("dd", { "data-testid": "signal" }, value)]));
}

function onCallEvent(event) {
  switch (event.type) {
    case "transcript": {
      const key = `${event.track}-${event.utterance}`;
      let line = state.transcript.get(key);
      if (!line) {
        line = el("li", { class: event.track });
        state.transcript.set(key, line);
        $("transcript").append(line);
      }
      const who = event.track === "inbound" ? "customer" : "agent";
      line.classList.toggle("interim", !event.is_final);
      line.dataset.final = event.is_final;
      line.replaceChildren(el("span", { class: "who" }, who), event.text);
      if (event.is_final && event.sentiment) {
        const s = event.sentiment;
        line.append(el("span", { class: `sentiment ${s.label}`, "data-testid": "sentiment" },
          `${s.label} ${s.score.toFixed(2)}`));
        state.series[event.track].push(s.rolling);
        drawSeries();
      }
      line.scrollIntoView({ block: "nearest" });
      break;
    }
    case "lead_score": {
      $("score").textContent = event.score;
      const reasons = $("reasons");
      reasons.replaceChildren();
      const factors = [...event.factors].sort((a, b) => b.contribution - a.contribution);
      for (const f of factors.filter((f) => f.contribution > 0).slice(0, 3)) {
        reasons.append(el("li", { class: "up" }, `▲ ${f.label || f.feature} +${f.contribution.toFixed(2)}`));
      }
      for (const f of factors.filter((f) => f.contribution < 0).reverse().slice(0, 3)) {
        reasons.append(el("li", { class: "down" }, `▼ ${f.label || f.feature} ${f.contribution.toFixed(2)}`));
      }
      break;
    }
    case "call_signals":
      renderSignals(event);
      break;
    case "call_summary":
      renderSignals(event.signals);
      if (event.keyterms?.length) {
        $("signals").append(el("dt", {}, "keyterms heard"),
          el("dd", { "data-testid": "keyterms" }, event.keyterms.join(", ")));
      }
      break;
    case "call_ended":
      $("transcript").append(el("li", { class: "ended" }, `call ended (${event.reason})`));
      break;
  }
}

function drawSeries() {
  for (const track of ["inbound", "outbound"]) {
    const values = state.series[track];
    const step = 300 / Math.max(1, values.length - 1);
    const xy = values.map((v, i) => [(i * step).toFixed(1), (50 - v * 48).toFixed(1)]);
    $(`sentiment-${track}`).setAttribute("points", xy.map((p) => p.join(",")).join(" "));
    // A dot per utterance, so that a single one shows too.
    const dots = $(`sentiment-${track}-dots`);
    dots.replaceChildren(...xy.map(([x, y]) => {
      const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
      dot.setAttribute("cx", x);
      dot.setAttribute("cy", y);
      dot.setAttribute("r", 3);
      return dot;
    }));
  }
}

// ---- listen-in ----

// The call's audio from /listen/<call>: 20 ms Opus packets per track (1 byte track, 8 bytes
// call-clock ms, the packet), decoded with WebCodecs and played through Web Audio, each track
// scheduled on the call's clock. `window.winnerrListen` counts what arrived and played.
const listen = { socket: null, context: null, decoders: [], start: null, packets: 0, decoded: 0 };
window.winnerrListen = listen;

function stopListening() {
  listen.socket?.close(1000);
  for (const decoder of listen.decoders) if (decoder.state !== "closed") decoder.close();
  listen.context?.close();
  Object.assign(listen, { socket: null, context: null, decoders: [], start: null });
  $("listen").textContent = "▶ Listen";
  $("listen-status").textContent = "";
}

function play(data) {
  const { context } = listen;
  const samples = new Float32Array(data.numberOfFrames);
  data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
  const buffer = context.createBuffer(1, data.numberOfFrames, data.sampleRate);
  buffer.copyToChannel(samples, 0);
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  // The first packet sets the clock, 150 ms ahead to absorb jitter.
  const at = data.timestamp / 1e6;
  if (listen.start === null) listen.start = context.currentTime + 0.15 - at;
  source.start(Math.max(context.currentTime, listen.start + at));
  data.close();
  listen.decoded++;
}

function startListening() {
  if (!("AudioDecoder" in window)) {
    $("listen-status").textContent = "this browser cannot decode Opus (WebCodecs)";
    return;
  }
  const call = state.openCall;
  listen.context = new AudioContext();
  // Decoders at the call's own rate, which the first message says (8 kHz phone, 16 kHz softphone).
  listen.decoders = [];
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(
    `${scheme}://${location.host}/listen/${encodeURIComponent(call)}?access_token=${encodeURIComponent(state.token)}`);
  socket.binaryType = "arraybuffer";
  listen.socket = socket;
  $("listen").textContent = "■ Stop";
  $("listen-status").textContent = "connecting…";
  socket.onmessage = (message) => {
    if (typeof message.data === "string") {
      const hello = JSON.parse(message.data);
      listen.decoders = [0, 1].map(() => {
        const decoder = new AudioDecoder({ output: play, error: (e) => console.warn("decoder:", e) });
        decoder.configure({ codec: "opus", sampleRate: hello.sample_rate || 8000, numberOfChannels: 1 });
        return decoder;
      });
      $("listen-status").textContent = "live audio";
      return;
    }
    const bytes = new DataView(message.data);
    const track = bytes.getUint8(0);
    const ms = Number(bytes.getBigUint64(1));
    listen.packets++;
    listen.decoders[track]?.decode(new EncodedAudioChunk({
      type: "key", timestamp: ms * 1000, data: new Uint8Array(message.data, 9),
    }));
  };
  socket.onclose = (event) => {
    if (listen.socket !== socket) return;
    const why = event.code === 1000 ? "call ended" : `closed (${event.code})`;
    stopListening();
    $("listen-status").textContent = why;
  };
}

// ---- session ----

function login(token) {
  state.token = token.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("login").hidden = true;
  $("manager").hidden = false;
  $("logout").hidden = false;
  $("my-status").hidden = false;
  connect();
}

function logout(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  const socket = state.socket;
  Object.assign(state, { token: null, hello: null, socket: null, retry: 0, openCall: null });
  state.positions.clear();
  socket?.close(1000);
  $("login").hidden = false;
  $("manager").hidden = true;
  $("call").hidden = true;
  $("logout").hidden = true;
  $("my-status").hidden = true;
  setStatus(reason ?? "offline", "offline");
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  login($("token").value);
});
$("logout").onclick = () => logout();
$("close-call").onclick = closeCall;
$("listen").onclick = () => (listen.socket ? stopListening() : startListening());
$("my-status").onchange = () => send({ type: "presence", status: $("my-status").value });
setInterval(() => state.calls.size && renderCalls(), 1000);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) login(saved);
