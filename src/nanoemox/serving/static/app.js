// Nano-EmoX web page: pick or record a clip, send it to POST /v1/analyze, draw the answers.
// No framework and no build step. Every model-produced string goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const TASK_NAMES = { mer: "Emotion", msa: "Sentiment", ovmer: "All emotions", eri: "Reason", mir: "Intent", erg: "Empathic reply" };
let clip = null;        // the File / Blob to send
let recorder = null;    // MediaRecorder while recording
let chunks = [];

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text || "";
  s.className = "status" + (kind ? " " + kind : "");
}

// ---------------------------------------------------------------- input
function showPreview(blob, name) {
  const box = $("preview");
  box.replaceChildren();
  const url = URL.createObjectURL(blob);
  const type = blob.type || "";
  let node;
  if (type.startsWith("image/")) { node = el("img"); node.alt = name; }
  else if (type.startsWith("audio/")) { node = el("audio"); node.controls = true; }
  else { node = el("video"); node.controls = true; node.muted = true; node.playsInline = true; }
  node.src = url;
  box.append(node, el("div", "muted small", `${name} · ${(blob.size / 1024).toFixed(0)} KB`));
}

function useFile(file) {
  if (!file) return;
  clip = file;
  $("drop-text").textContent = "Drop another file here to replace it";
  showPreview(file, file.name);
  setStatus("");
}

$("file").addEventListener("change", (e) => useFile(e.target.files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  if (e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
});

async function startRecording() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setStatus("Recording needs a browser with MediaRecorder (and https or localhost).", "error");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
    catch (e2) { setStatus("No camera or microphone: " + e2.message, "error"); return; }
  }
  const hasVideo = stream.getVideoTracks().length > 0;
  chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    const type = recorder.mimeType || (hasVideo ? "video/webm" : "audio/webm");
    const blob = new Blob(chunks, { type });
    const file = new File([blob], hasVideo ? "recording.webm" : "recording-audio.webm", { type });
    useFile(file);
    $("record-state").textContent = "";
    $("record").disabled = false;
    $("stop").disabled = true;
  };
  recorder.start();
  $("record").disabled = true;
  $("stop").disabled = false;
  $("record-state").textContent = hasVideo ? "recording video…" : "recording audio…";
}

$("record").addEventListener("click", startRecording);
$("stop").addEventListener("click", () => { if (recorder && recorder.state !== "inactive") recorder.stop(); });

// ---------------------------------------------------------------- request
async function analyze() {
  const tasks = [...document.querySelectorAll("#tasks input:checked")].map((c) => c.value);
  if (!tasks.length) { setStatus("Pick at least one task.", "error"); return; }
  const transcript = $("transcript").value.trim();
  if (!clip && !transcript) { setStatus("Choose or record a clip (or type what is said).", "error"); return; }
  const form = new FormData();
  if (clip) form.append("file", clip, clip.name || "clip");
  form.append("tasks", tasks.join(","));
  form.append("transcript", transcript);
  form.append("asr", $("asr").checked ? "true" : "false");
  const maxNew = $("max-new-tokens").value.trim();
  if (maxNew) form.append("max_new_tokens", maxNew);
  const headers = {};
  const key = $("api-key").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;

  $("analyze").disabled = true;
  setStatus("Analyzing…", "busy");
  const t0 = performance.now();
  try {
    const resp = await fetch("/v1/analyze", { method: "POST", body: form, headers });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : `HTTP ${resp.status}`;
      if (resp.status === 401) $("api-key").closest("details").open = true;
      setStatus(`${resp.status}: ${msg}`, "error");
      return;
    }
    render(body);
    setStatus(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s.`, "ok");
  } catch (e) {
    setStatus("Request failed: " + e.message, "error");
  } finally {
    $("analyze").disabled = false;
  }
}

$("analyze").addEventListener("click", analyze);

// ---------------------------------------------------------------- rendering
function chips(labels, cls) {
  const row = el("div", "chips");
  for (const l of labels) row.append(el("span", "chip " + (cls || ""), l));
  return row;
}

function sentimentBar(label, score) {
  const wrap = el("div", "sentiment");
  const bar = el("div", "sentiment-bar");
  const marker = el("div", "sentiment-marker");
  const s = typeof score === "number" ? Math.max(-3, Math.min(3, score)) : ({ positive: 1.5, negative: -1.5 }[label] || 0);
  marker.style.left = `${((s + 3) / 6) * 100}%`;
  marker.title = typeof score === "number" ? `score ${score}` : label;
  bar.append(marker);
  const scale = el("div", "sentiment-scale");
  scale.append(el("span", "", "−3 negative"), el("span", "", "neutral"), el("span", "", "positive +3"));
  wrap.append(bar, scale);
  return wrap;
}

function taskCard(task, r) {
  const card = el("article", "task-card");
  card.dataset.task = task;
  const head = el("header");
  head.append(el("h3", "", TASK_NAMES[task] || task), el("span", "task-code", task));
  card.append(head);

  if (r.parse_error) {
    const warn = el("p", "parse-error", "Could not read this answer: " + r.parse_error);
    card.append(warn);
  }
  if (task === "msa") {
    if (r.label) card.append(chips([r.label + (typeof r.score === "number" ? ` (${r.score > 0 ? "+" : ""}${r.score.toFixed(1)})` : "")], "sent-" + r.label));
    if (r.label || typeof r.score === "number") card.append(sentimentBar(r.label, r.score));
  } else if (task === "erg") {
    if (r.emotion) card.append(chips([r.emotion]));
    if (r.think) {
      const d = el("details", "chain");
      d.append(el("summary", "", "Chain of empathy"));
      const steps = r.chain ? ["event", "emotion", "cause", "goal"].filter((k) => r.chain[k]).map((k) => `${k}: ${r.chain[k]}`) : [r.think];
      const list = el("ol");
      for (const s of steps) list.append(el("li", "", s));
      d.append(list);
      card.append(d);
    }
    if (r.reply) card.append(el("blockquote", "reply", r.reply));
  } else if (task === "eri") {
    if (r.emotion) card.append(chips([r.emotion]));
    if (r.reason) card.append(el("p", "reason", r.reason));
  } else {
    const labels = r.labels && r.labels.length ? r.labels : (r.label ? [r.label] : []);
    if (labels.length) card.append(chips(labels));
  }
  const raw = el("details", "raw");
  raw.append(el("summary", "", "raw output"), el("pre", "", r.raw || "(empty)"));
  card.append(raw);
  return card;
}

function renderGate(gate) {
  const box = $("gate-box");
  const chart = $("gate");
  chart.replaceChildren();
  if (!Array.isArray(gate) || !gate.length) { box.hidden = true; return; }
  box.hidden = false;
  const max = Math.max(...gate, 1e-9);
  gate.forEach((g, i) => {
    const row = el("div", "gate-row");
    const bar = el("div", "gate-bar");
    bar.style.width = `${(g / max) * 100}%`;
    const track = el("div", "gate-track");
    track.append(bar);
    row.append(el("span", "gate-label", `expert ${i + 1}`), track, el("span", "gate-value", g.toFixed(3)));
    chart.append(row);
  });
}

function render(body) {
  $("empty").hidden = true;
  const meta = $("meta");
  meta.replaceChildren();
  const media = body.media || {};
  const bits = [];
  if (media.duration_s != null) bits.push(`${media.duration_s.toFixed(1)} s`);
  bits.push("modalities: " + ((body.modalities || []).join(", ") || "text only"));
  if (body.transcript) bits.push(`transcript (${body.transcript_source}): “${body.transcript}”`);
  meta.append(el("p", "small", bits.join(" · ")));
  for (const w of body.warnings || []) meta.append(el("p", "warning small", "⚠ " + w));

  const results = $("results");
  results.replaceChildren();
  for (const [task, r] of Object.entries(body.results || {})) results.append(taskCard(task, r));
  renderGate(body.gate);
  const t = body.timings || {};
  $("timings").textContent = Object.entries(t).map(([k, v]) => `${k.replace(/_s$/, "")} ${v.toFixed(2)} s`).join(" · ");
}

// ---------------------------------------------------------------- boot
fetch("/healthz").then((r) => r.json()).then((h) => {
  $("model").textContent = h.model;
  if (h.auth) $("api-key").closest("details").open = true;
}).catch(() => { $("model").textContent = "server unreachable"; });
