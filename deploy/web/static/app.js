// vidserve's page: plain JavaScript over the public API (no framework, no build step).
// Paths are relative to the page, so it works under a Serve route prefix (open it with the
// trailing slash: /prefix/).
"use strict";

const $ = (selector) => document.querySelector(selector);
const KEY_STORAGE = "vidserve-api-key";
const state = { file: null, url: null, job: null, model: null };

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function clock(seconds) {
  const whole = Math.max(0, seconds);
  const minutes = Math.floor(whole / 60);
  return `${minutes}:${(whole % 60).toFixed(1).padStart(4, "0")}`;
}

function showError(text) {
  const box = $("#error");
  box.textContent = text;
  box.hidden = !text;
}

// The service's own message: {"error": {"message", "code"}}; never a stack trace.
function errorText(status, body) {
  try {
    const error = JSON.parse(body).error;
    return `${error.message} (${status} ${error.code})`;
  } catch (_) {
    return `the service answered ${status}`;
  }
}

function setSource(file, url) {
  state.file = file;
  state.url = url;
  state.job = null;
  const player = $("#player");
  player.src = file ? URL.createObjectURL(file) : url;
  player.hidden = false;
  $("#ask-button").disabled = false;
  $("#summarize").disabled = false;
  showError("");
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function servedModel() {
  if (state.model) return state.model;
  const response = await fetch("v1/models", { headers: authHeaders() });
  const body = await response.text();
  if (!response.ok) throw new Error(errorText(response.status, body));
  state.model = JSON.parse(body).data[0].id;
  return state.model;
}

function videoOptions() {
  const options = {};
  const frames = parseInt($("#num-frames").value, 10);
  if (frames) options.num_frames = frames;
  if ($("#strategy").value) options.strategy = $("#strategy").value;
  const start = parseFloat($("#start-s").value);
  const end = parseFloat($("#end-s").value);
  if (!Number.isNaN(start)) options.start_s = start;
  if (!Number.isNaN(end)) options.end_s = end;
  options.audio = $("#speech").checked ? "auto" : "off";
  return options;
}

// POST with XMLHttpRequest: upload progress, and the response read as it streams in.
function post(path, body, contentType, onUpload, onText) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    if (contentType) request.setRequestHeader("Content-Type", contentType);
    request.upload.onprogress = (event) => event.lengthComputable && onUpload(event.loaded / event.total);
    request.onprogress = () => onText && onText(request.responseText);
    request.onload = () => resolve({ status: request.status, text: request.responseText });
    request.onerror = () => resolve({ status: 0, text: "" });
    request.send(body);
  });
}

function uploadProgress(fraction) {
  const bar = $("#upload-progress");
  bar.hidden = fraction >= 1;
  bar.value = fraction;
}

async function ask() {
  const question = $("#question").value.trim();
  if (!question) return showError("type a question first");
  showError("");
  $("#answer").textContent = "";
  $("#answer").dataset.pieces = "0";
  $("#backend").textContent = "";
  $("#frames").replaceChildren();
  $("#transcript").replaceChildren();
  let model;
  try {
    model = await servedModel();
  } catch (error) {
    return showError(error.message);
  }
  // A video opened from the library is asked about through its job (its chunks, its frames).
  const content = [{ type: "text", text: question }];
  const options = state.job ? { job_id: state.job } : videoOptions();
  if (!state.job) {
    const url = state.file ? await readAsDataUrl(state.file) : state.url;
    content.unshift({ type: "video_url", video_url: { url } });
  }
  const body = JSON.stringify({
    model,
    stream: true,
    messages: [{ role: "user", content }],
    video_options: options,
  });
  let seen = 0;
  let extension = null;
  const onText = (text) => {
    const events = text.slice(seen).split("\n\n");
    const complete = events.slice(0, -1);
    seen += complete.reduce((n, event) => n + event.length + 2, 0);
    for (const event of complete) {
      const data = event.replace(/^data: /, "");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) return showError(`${chunk.error.message} (${chunk.error.code})`);
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          const answer = $("#answer");
          answer.textContent += choice.delta.content;
          answer.dataset.pieces = String(Number(answer.dataset.pieces || 0) + 1);
        }
      }
      if (chunk.vidserve) extension = chunk.vidserve;
    }
  };
  uploadProgress(0);
  const answered = await post("v1/chat/completions", body, "application/json", uploadProgress, onText);
  uploadProgress(1);
  if (answered.status !== 200) return showError(errorText(answered.status, answered.text));
  onText(answered.text + "\n\n");
  if (extension) showExtension(extension);
}

function showExtension(extension) {
  const fallback = extension.fallback ? ` (fallback from ${extension.fallback.from_backend}: ${extension.fallback.reason})` : "";
  const cached = extension.frames && extension.frames.cached ? "; frames from the cache" : "";
  $("#backend").textContent = `answered by ${extension.backend}${fallback}${cached}`;
  if (extension.frames) showFrames(extension.frames.timestamps);
  showTranscript(extension.speech);
}

// What was said in the window the answer heard, under the player: click a line to seek there.
function showTranscript(speech) {
  const list = $("#transcript");
  list.replaceChildren();
  list.dataset.note = (speech && speech.note) || "";
  for (const line of (speech && speech.segments) || []) {
    const item = document.createElement("li");
    item.dataset.start = String(line.start);
    item.textContent = `${clock(line.start)}  ${line.text}`;
    item.addEventListener("click", () => seek(line.start));
    list.append(item);
  }
}

// The frames the model looked at, drawn from the video in the page at their timestamps.
async function showFrames(timestamps) {
  const strip = $("#frames");
  const copy = document.createElement("video");
  copy.muted = true;
  copy.src = $("#player").src;
  await new Promise((resolve) => { copy.onloadeddata = resolve; copy.onerror = resolve; });
  for (const t of timestamps) {
    const thumb = document.createElement("button");
    thumb.className = "thumb";
    thumb.type = "button";
    thumb.dataset.t = String(t);
    const canvas = document.createElement("canvas");
    canvas.width = 160;
    canvas.height = 90;
    // A seek to where the copy already is (0 after loading) fires no `seeked`, and drawing
    // before the frame is decoded draws nothing: always seek (0 becomes a millisecond in), and
    // draw once `seeked` says the frame is there.
    const seeked = await new Promise((resolve) => {
      copy.onseeked = () => resolve(true);
      copy.currentTime = Math.max(t, 0.001);
      setTimeout(() => resolve(false), 2000);
    });
    thumb.dataset.seeked = String(seeked);  // false: drawn after a timeout, maybe not the frame
    try {
      canvas.height = Math.round((160 * copy.videoHeight) / Math.max(1, copy.videoWidth)) || 90;
      canvas.getContext("2d").drawImage(copy, 0, 0, canvas.width, canvas.height);
    } catch (_) { /* a cross-origin video cannot be drawn: the timestamp alone */ }
    const label = document.createElement("span");
    label.textContent = clock(t);
    thumb.append(canvas, label);
    thumb.addEventListener("click", () => seek(t));
    strip.append(thumb);
  }
}

function seek(t) {
  const player = $("#player");
  player.currentTime = t;
  player.dataset.seekedTo = String(t);
}

// Server-sent events of a job, read with fetch (EventSource cannot send the API key).
async function followJob(id) {
  const response = await fetch(`v1/video/jobs/${id}/events`, { headers: authHeaders() });
  if (!response.ok) return showError(errorText(response.status, await response.text()));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const name = (event.match(/^event: (.*)$/m) || [])[1];
      const data = (event.match(/^data: (.*)$/m) || [])[1];
      if (!name || !data || data === "[DONE]") continue;
      onJobEvent(name, JSON.parse(data));
    }
  }
}

function onJobEvent(name, data) {
  const bar = $("#job-progress");
  if (name === "chunk") {
    bar.hidden = false;
    bar.max = data.progress.chunks_total || 1;
    bar.value = data.progress.chunks_seen;
    $("#job-state").textContent = `${data.progress.chunks_seen} of ${data.progress.chunks_total} chunks`;
    // Each chunk's caption as it finishes; the chapters replace them at the end.
    const item = document.createElement("li");
    item.className = "caption";
    item.dataset.start = String(data.start_s);
    item.textContent = `${clock(data.start_s)}–${clock(data.end_s)} ${data.text || (data.error && data.error.message) || ""}`;
    item.addEventListener("click", () => seek(data.start_s));
    $("#chapters").append(item);
    const list = $("#chapters");
    list.dataset.captionsShown = String(Number(list.dataset.captionsShown || 0) + 1);
  } else if (name === "state") {
    $("#job-state").textContent = data.state;
  } else if (name === "result") {
    $("#job-state").textContent = data.state;
    if (data.error) showError(`${data.error.message} (${data.error.code})`);
    const chapters = (data.result && data.result.chapters) || [];
    $("#chapters").replaceChildren(...chapters.map((chapter) => {
      const item = document.createElement("li");
      item.className = "chapter";
      item.dataset.start = String(chapter.start_s);
      item.textContent = `${clock(chapter.start_s)}–${clock(chapter.end_s)} ${chapter.title}: ${chapter.summary}`;
      item.addEventListener("click", () => seek(chapter.start_s));
      return item;
    }));
  }
}

async function summarize() {
  showError("");
  $("#chapters").replaceChildren();
  $("#chapters").dataset.captionsShown = "0";
  let created;
  if (state.file) {
    const form = new FormData();
    form.append("file", state.file);
    form.append("task", "chapters");
    uploadProgress(0);
    created = await post("v1/video/jobs", form, null, uploadProgress, null);
    uploadProgress(1);
  } else {
    created = await post("v1/video/jobs", JSON.stringify({ url: state.url, task: "chapters" }), "application/json", () => {}, null);
  }
  if (created.status !== 202) return showError(errorText(created.status, created.text));
  const job = JSON.parse(created.text);
  $("#job-state").textContent = job.state;
  await followJob(job.id);
}

// Library search: every video the key's jobs analyzed, by words and by meaning. Each result
// shows the frame at its start (the thumbnail route), its time range and which search found
// it; a click opens that video at that time.
async function search() {
  const q = $("#search-q").value.trim();
  if (!q) return;
  showError("");
  const response = await fetch(`v1/video/search?q=${encodeURIComponent(q)}`, { headers: authHeaders() });
  const body = await response.text();
  if (!response.ok) return showError(errorText(response.status, body));
  const found = JSON.parse(body);
  $("#search-note").textContent = found.note || "";
  $("#search-results").dataset.query = q;  // which search the list shows
  $("#search-results").replaceChildren(...found.data.map((hit) => {
    const item = document.createElement("li");
    item.className = "result";
    item.dataset.job = hit.job_id;
    item.dataset.start = String(hit.start_s);
    item.dataset.match = hit.match;
    const image = document.createElement("img");
    image.alt = `${hit.video} at ${clock(hit.start_s)}`;
    thumbnail(image, hit.job_id, hit.start_s);
    const text = document.createElement("span");
    text.textContent = `${hit.video} ${clock(hit.start_s)}–${clock(hit.end_s)} [${hit.match}, ${hit.kind}] ${hit.text}`;
    item.append(image, text);
    item.addEventListener("click", () => openResult(hit));
    return item;
  }));
}

// Media fetched with the key (an <img> or <video> src cannot send it): the bytes as a blob URL.
async function fetched(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw new Error(errorText(response.status, await response.text()));
  return URL.createObjectURL(await response.blob());
}

async function thumbnail(image, job, t) {
  try {
    image.src = await fetched(`v1/video/jobs/${job}/thumbnail?t=${t.toFixed(3)}`);
    image.dataset.loaded = "true";
  } catch (error) {
    image.dataset.loaded = "false";
    image.title = error.message;
  }
}

async function openResult(hit) {
  showError("");
  const player = $("#player");
  try {
    // Without a key the player streams it (Range requests); with one it is fetched whole.
    const path = `v1/video/jobs/${hit.job_id}/media`;
    player.src = sessionStorage.getItem(KEY_STORAGE) ? await fetched(path) : path;
  } catch (error) {
    return showError(error.message);
  }
  state.file = null;
  state.url = null;
  state.job = hit.job_id;
  player.hidden = false;
  player.dataset.job = hit.job_id;
  $("#ask-button").disabled = false;
  $("#summarize").disabled = true;  // already analyzed
  player.addEventListener("loadedmetadata", () => seek(hit.start_s), { once: true });
  if (player.readyState >= 1) seek(hit.start_s);
}

function init() {
  const keyField = $("#api-key");
  keyField.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyField.addEventListener("change", () => { sessionStorage.setItem(KEY_STORAGE, keyField.value.trim()); state.model = null; });
  $("#file").addEventListener("change", (event) => event.target.files[0] && setSource(event.target.files[0], null));
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) setSource(event.dataTransfer.files[0], null);
  });
  $("#use-url").addEventListener("click", () => $("#url").value.trim() && setSource(null, $("#url").value.trim()));
  $("#ask-button").addEventListener("click", ask);
  $("#question").addEventListener("keydown", (event) => event.key === "Enter" && ask());
  $("#summarize").addEventListener("click", summarize);
  $("#search-button").addEventListener("click", search);
}

init();
