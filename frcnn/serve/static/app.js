// The service's own page: v1 against v2 on your photos, video jobs, live sources. It calls only the public API
// (/v1/...), and draws every box itself from the JSON, so that the threshold, the class filter and the marks of
// what differs change at once, without asking the server again.
"use strict";

const ASK_THRESHOLD = 0.05; // each picture is asked for once at this score; the page filters above it
const MATCH_IOU = 0.5; // two models' boxes are "the same object" at this overlap, of the same class
const VIDEO_SUFFIXES = [".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"];
const KEY_STORAGE = "frcnn-api-key";
const JOB_LIST_PAGE = 20; // earlier videos shown at first, and added by "Show older"
const JOB_LIST_REFRESH_MS = 3000; // how often the list is read again while one of its jobs is queued or running
const FINISHED_STATES = ["done", "failed", "cancelled"];

const page = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  described: null, // GET /v1/models
  serverThreshold: 0.5,
  askThreshold: ASK_THRESHOLD,
  threshold: 0.5,
  classFilter: "",
  markDifferences: true,
  pictures: [], // {file, record, card, image}
  queue: Promise.resolve(), // pictures are sent one after another: the server detects one at a time anyway
  jobListAsked: 0, // how many times the list of earlier videos was asked for: only the newest answer is shown
  jobListError: null, // the message saying why the list could not be read, while it stands
  jobListLimit: JOB_LIST_PAGE, // how many earlier videos are shown: "Show older" adds a page
  jobListTimer: null, // the next reading of the list, while a listed job is queued or running
};

const $ = (selector, root = document) => root.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") made.textContent = value;
    else if (name === "className") made.className = value;
    else made.setAttribute(name, value);
  }
  for (const child of children) made.append(child);
  return made;
}

// ------------------------------------------------------------------ talking to the API

class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function keyHeaders(extra = {}) {
  const headers = new Headers(extra);
  if (page.key) headers.set("X-API-Key", page.key);
  return headers;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: keyHeaders(options.headers || {}) });
  } catch (error) {
    throw new ApiError(0, `cannot reach the server (${error.message}); is it still running?`);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch (_) { /* not JSON: the status line says it */ }
    const retry = parseInt(response.headers.get("Retry-After") || "", 10);
    throw new ApiError(response.status, message, Number.isFinite(retry) ? retry : null);
  }
  return response;
}

// What a person can do about an error, in one sentence or two.
function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in this page: ${error.message}`;
  if (error.status === 401) {
    openKeyBox();
    return "This server needs an API key: enter it under “API key” at the top, then try again.";
  }
  if (error.status === 429 || (error.status === 503 && error.retryAfter)) {
    const wait = error.retryAfter || 5;
    return `The server is busy: try again in ${wait} s. (${error.message})`;
  }
  if (error.status === 413) return `Too large for this server: ${error.message}`;
  if (error.status === 415 || error.status === 422) return error.message;
  if (error.status === 403) return `The server refuses this: ${error.message}`;
  return error.message;
}

function say(text, kind = "error") {
  const line = element("p", { className: `message ${kind}` }, text);
  const close = element("button", { type: "button", className: "dismiss", "aria-label": "dismiss", text: "×" });
  close.addEventListener("click", () => line.remove());
  line.append(" ", close);
  $("#messages").append(line);
  return line;
}

function openKeyBox() {
  const box = $("#key-box");
  box.open = true;
  $("#key-input").focus();
}

// A button that waits out Retry-After, then runs `again`.
function retryButton(error, again) {
  const button = element("button", { type: "button", className: "retry" });
  let left = error.retryAfter || 0;
  const tick = () => {
    button.disabled = left > 0;
    button.textContent = left > 0 ? `Try again in ${left} s` : "Try again";
    if (left-- > 0) setTimeout(tick, 1000);
  };
  tick();
  button.addEventListener("click", again);
  return button;
}

// ------------------------------------------------------------------ the models

async function loadModels() {
  let described;
  try {
    described = await (await api("/v1/models")).json();
  } catch (error) {
    $("#models-line").textContent = explain(error);
    if (error.status !== 401) setTimeout(loadModels, 3000);
    return;
  }
  page.described = described;
  page.serverThreshold = described.threshold;
  page.askThreshold = Math.min(ASK_THRESHOLD, described.threshold);
  setThreshold(described.threshold);
  for (const input of [$("#threshold-range"), $("#threshold-number")]) input.min = String(page.askThreshold);
  const names = described.models.map((model) => model.name);
  const offered = names.length > 1 ? [...names, "both"] : names;
  const select = $("#model-select");
  select.replaceChildren(...offered.map((name) => element("option", { value: name, text: name === "both"
    ? "v1 and v2 side by side" : name })));
  select.value = offered.includes(described.default_model) ? described.default_model : offered[offered.length - 1];
  const parts = described.models.map((model) =>
    `${model.name}: ${model.weights === "COCO" ? "COCO weights" : baseName(model.weights)} (${model.runtime}, ` +
    `${model.precision}, ${model.imgsz} px${model.ready ? "" : ", loading…"})`);
  $("#models-line").textContent = `${parts.join(" · ")} · the server's threshold ${described.threshold}`;
  refreshClassFilter();
  if (!described.models.every((model) => model.ready)) setTimeout(loadModels, 2000);
}

function baseName(path) {
  return String(path).split(/[\\/]/).pop();
}

function chosenModel() {
  return $("#model-select").value || undefined;
}

// ------------------------------------------------------------------ what differs between two models

function iou(a, b) {
  const width = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const height = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const intersection = width * height;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection;
  return union > 0 ? intersection / union : 0;
}

// One-to-one pairs of boxes of the same class overlapping by IoU >= 0.5, the largest overlap first (ties in the
// order of the boxes): the rule frcnn.core.boxes.greedy_pairs applies for the project's agreement figures. It runs
// here, in the browser, because it must follow every move of the slider and the class filter at once.
function matchDetections(first, second, threshold = MATCH_IOU) {
  const candidates = [];
  first.forEach((a, row) => second.forEach((b, column) => {
    if (a.label !== b.label) return;
    const overlap = iou(a.box, b.box);
    if (overlap >= threshold) candidates.push([row, column, overlap]);
  }));
  candidates.sort((p, q) => q[2] - p[2]); // a stable sort: equal overlaps keep their order
  const usedRows = new Set(), usedColumns = new Set(), pairs = [];
  for (const [row, column] of candidates) {
    if (usedRows.has(row) || usedColumns.has(column)) continue;
    usedRows.add(row);
    usedColumns.add(column);
    pairs.push([row, column]);
  }
  return {
    pairs,
    onlyFirst: first.map((_, index) => index).filter((index) => !usedRows.has(index)),
    onlySecond: second.map((_, index) => index).filter((index) => !usedColumns.has(index)),
  };
}
window.matchDetections = matchDetections; // for the tests, which hold it to the project's own rule

// ------------------------------------------------------------------ drawing

// The colour detect_image.py gives a class (frcnn.drawing.class_colour): the hue steps by the golden ratio.
function classColour(labelId) {
  const hue = (labelId * 0.618033988749895) % 1.0;
  const [s, v] = [0.75, 0.95];
  const i = Math.floor(hue * 6), f = hue * 6 - i;
  const p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return `rgb(${Math.round(r * 255)}, ${Math.round(g * 255)}, ${Math.round(b * 255)})`;
}

function shownDetections(result) {
  return result.detections.filter((d) => d.score >= page.threshold - 1e-9 &&
    (!page.classFilter || d.label === page.classFilter));
}

function drawPanel(panel) {
  const { canvas, image, record } = panel;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (image) context.drawImage(image, 0, 0, record.width, record.height);
  else {
    context.fillStyle = "#777";
    context.fillRect(0, 0, canvas.width, canvas.height);
  }
  const line = Math.max(1, Math.round(Math.min(record.width, record.height) / 300));
  panel.shown.forEach((detection, index) => {
    const [x1, y1, x2, y2] = detection.box;
    const only = page.markDifferences && panel.only.has(index);
    const focused = panel.focus === index;
    context.strokeStyle = classColour(detection.label_id);
    context.lineWidth = focused ? line * 3 : only ? line * 2 : line;
    context.setLineDash(only ? [line * 5, line * 3] : []);
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (only) {
      context.setLineDash([]);
      context.fillStyle = classColour(detection.label_id);
      context.beginPath();
      context.arc(x1, y1, line * 3, 0, 2 * Math.PI);
      context.fill();
      context.strokeStyle = "#fff";
      context.lineWidth = Math.max(1, line / 2);
      context.stroke();
    }
  });
  context.setLineDash([]);
}

// Each picture's panels: what is shown at the current threshold and class, and what the other model lacks.
function refreshPicture(picture) {
  const panels = picture.panels || [];
  for (const panel of panels) {
    panel.shown = shownDetections(panel.result);
    panel.only = new Set();
    panel.focus = null;
  }
  const differences = $(".differences", picture.card);
  if (panels.length === 2) {
    const [first, second] = panels;
    const match = matchDetections(first.shown, second.shown);
    first.only = new Set(match.onlyFirst);
    second.only = new Set(match.onlySecond);
    differences.textContent = `${second.name} found ${match.onlySecond.length} that ${first.name} missed; ` +
      `${first.name} found ${match.onlyFirst.length} that ${second.name} missed; ${match.pairs.length} found by ` +
      `both (same class, IoU ≥ ${MATCH_IOU}).`;
    differences.dataset.onlyFirst = String(match.onlyFirst.length);
    differences.dataset.onlySecond = String(match.onlySecond.length);
    differences.dataset.both = String(match.pairs.length);
  } else {
    differences.textContent = "";
  }
  for (const panel of panels) {
    const count = panel.shown.length;
    panel.title.textContent = `${panel.name}: ${count} ${count === 1 ? "box" : "boxes"} · ` +
      `${Math.round(panel.result.inference_ms)} ms`;
    panel.figure.dataset.count = String(count);
    panel.canvas.setAttribute("aria-label", `${panel.name}: ${count} boxes on ${picture.record.file}; ` +
      "arrow keys step through them");
    drawPanel(panel);
  }
}

function refreshAll() {
  page.pictures.forEach(refreshPicture);
  hideTooltip();
}

function refreshClassFilter() {
  const counts = new Map();
  for (const picture of page.pictures) {
    for (const panel of picture.panels || []) {
      for (const d of panel.result.detections) {
        if (d.score >= page.threshold - 1e-9) counts.set(d.label, (counts.get(d.label) || 0) + 1);
      }
    }
  }
  const select = $("#class-filter");
  const found = element("optgroup", { label: "found" });
  for (const label of [...counts.keys()].sort()) {
    found.append(element("option", { value: label, text: `${label} (${counts.get(label)})` }));
  }
  const others = element("optgroup", { label: "not found" });
  const known = new Set((page.described ? page.described.models : []).flatMap((model) => model.classes));
  if (page.classFilter) known.add(page.classFilter);
  for (const label of [...known].filter((name) => !counts.has(name)).sort()) {
    others.append(element("option", { value: label, text: label }));
  }
  select.replaceChildren(element("option", { value: "", text: "all classes" }),
    ...[found, others].filter((group) => group.children.length));
  select.value = page.classFilter;
}

function setThreshold(value) {
  const number = Math.min(1, Math.max(page.askThreshold, Number(value)));
  if (!Number.isFinite(number)) return;
  page.threshold = number;
  $("#threshold-range").value = String(number);
  if (Number($("#threshold-number").value) !== number) $("#threshold-number").value = String(number);
}

// ------------------------------------------------------------------ the label and score of a box

const tooltip = () => $("#tooltip");

function hideTooltip() {
  tooltip().hidden = true;
}

function describeBox(panel, index) {
  const detection = panel.shown[index];
  const only = panel.only.has(index) ? ` · only ${panel.name} found it` : "";
  return `${detection.label} ${detection.score.toFixed(3)}${only}`;
}

function showTooltip(panel, index, clientX, clientY) {
  const tip = tooltip();
  tip.textContent = describeBox(panel, index);
  tip.hidden = false;
  const x = Math.min(window.innerWidth - tip.offsetWidth - 4, clientX + 12);
  tip.style.left = `${Math.max(4, x) + window.scrollX}px`;
  tip.style.top = `${clientY + 14 + window.scrollY}px`;
}

function boxAt(panel, event) {
  const bounds = panel.canvas.getBoundingClientRect();
  const x = (event.clientX - bounds.left) * panel.record.width / bounds.width;
  const y = (event.clientY - bounds.top) * panel.record.height / bounds.height;
  let found = null, smallest = Infinity;
  panel.shown.forEach((detection, index) => {
    const [x1, y1, x2, y2] = detection.box;
    const area = (x2 - x1) * (y2 - y1);
    if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < smallest) {
      found = index;
      smallest = area;
    }
  });
  return found;
}

function watchPanel(panel) {
  const { canvas } = panel;
  canvas.addEventListener("pointermove", (event) => {
    const index = boxAt(panel, event);
    if (index !== panel.focus) {
      panel.focus = index;
      drawPanel(panel);
    }
    if (index === null) hideTooltip();
    else showTooltip(panel, index, event.clientX, event.clientY);
  });
  canvas.addEventListener("pointerleave", () => {
    panel.focus = null;
    drawPanel(panel);
    hideTooltip();
  });
  canvas.addEventListener("keydown", (event) => {
    if (!panel.shown.length || !["ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp"].includes(event.key)) return;
    event.preventDefault();
    const step = event.key === "ArrowRight" || event.key === "ArrowDown" ? 1 : -1;
    const count = panel.shown.length;
    panel.focus = panel.focus === null ? (step > 0 ? 0 : count - 1) : (panel.focus + step + count) % count;
    drawPanel(panel);
    const bounds = canvas.getBoundingClientRect();
    const box = panel.shown[panel.focus].box;
    showTooltip(panel, panel.focus, bounds.left + box[0] * bounds.width / panel.record.width,
      bounds.top + box[3] * bounds.height / panel.record.height);
  });
  canvas.addEventListener("blur", () => {
    panel.focus = null;
    drawPanel(panel);
    hideTooltip();
  });
}

// ------------------------------------------------------------------ photos

function isVideo(file) {
  const name = file.name.toLowerCase();
  return file.type.startsWith("video/") || VIDEO_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

function loadImage(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null); // a format the browser cannot show: the boxes go on grey
    image.src = url;
  });
}

function addPicture(file) {
  const card = $("#picture-template").content.firstElementChild.cloneNode(true);
  $(".picture-title", card).textContent = file.name;
  $("#pictures").prepend(card);
  const picture = { file, card, record: null, panels: null };
  page.pictures.unshift(picture);
  page.queue = page.queue.then(() => detectPicture(picture));
}

async function detectPicture(picture) {
  const { card, file } = picture;
  const status = $(".picture-status", card);
  status.className = "picture-status quiet";
  status.replaceChildren(`${file.name}: detecting…`);
  card.setAttribute("aria-busy", "true");
  const form = new FormData();
  form.append("file", file, file.name);
  const query = new URLSearchParams({ threshold: String(page.askThreshold) });
  const model = chosenModel();
  if (model) query.set("model", model);
  try {
    const [records, image] = await Promise.all([
      api(`/v1/detect?${query}`, { method: "POST", body: form }).then((response) => response.json()),
      picture.image !== undefined ? Promise.resolve(picture.image) : loadImage(file),
    ]);
    const record = records[0];
    if (record.error) throw new ApiError(record.status, record.error, null);
    picture.record = record;
    picture.image = image;
    showPicture(picture);
    status.textContent = image ? "" : `${file.name}: this browser cannot show the picture itself; its boxes are ` +
      "drawn on grey.";
  } catch (error) {
    card.classList.add("failed");
    status.className = "picture-status message error";
    const text = explain(error);
    status.replaceChildren(text.startsWith(file.name) ? text : `${file.name}: ${text}`);
    if (error.status === 429 || error.status === 503 || error.status === 401 || error.status === 0 ||
        error.status === 504) {
      status.append(" ", retryButton(error, () => {
        card.classList.remove("failed");
        page.queue = page.queue.then(() => detectPicture(picture));
      }));
    }
  } finally {
    card.removeAttribute("aria-busy");
  }
}

function showPicture(picture) {
  const { card, record } = picture;
  card.classList.remove("failed");
  const panels = $(".panels", card);
  panels.replaceChildren();
  picture.panels = record.results.map((result) => {
    const title = element("h4", { className: "panel-title" });
    const canvas = element("canvas", { tabindex: "0", width: String(record.width), height: String(record.height) });
    const figure = element("figure", { className: "panel", "data-model": result.model }, title, canvas);
    panels.append(figure);
    const panel = { name: result.model, result, record, canvas, title, figure, image: picture.image, shown: [],
      only: new Set(), focus: null };
    watchPanel(panel);
    return panel;
  });
  panels.classList.toggle("two", picture.panels.length > 1);
  refreshPicture(picture);
  refreshClassFilter();
}

function redetectAll() {
  for (const picture of page.pictures) {
    if (picture.file) page.queue = page.queue.then(() => detectPicture(picture));
  }
}

// ------------------------------------------------------------------ video jobs

function jobFields() {
  const fields = [];
  for (const input of $("#video-options").elements) {
    if (!input.name) continue;
    if (input.type === "checkbox") fields.push([input.name, input.checked ? "true" : "false"]);
    else if (input.value.trim()) fields.push([input.name, input.value.trim()]);
  }
  return fields;
}

// A new job card at the top of the jobs, titled with its clip or source.
function jobCard(title) {
  const card = $("#job-template").content.firstElementChild.cloneNode(true);
  $(".job-title", card).textContent = title;
  $("#jobs").prepend(card);
  return card;
}

async function startJob(file, source) {
  const card = jobCard(file ? file.name : source);
  const status = $(".job-status", card);
  const form = new FormData();
  if (file) form.append("file", file, file.name);
  else form.append("source", source);
  const model = chosenModel();
  if (model) form.append("model", model);
  for (const [name, value] of jobFields()) form.append(name, value);
  const cancel = $(".job-cancel", card);
  cancel.disabled = true;
  status.textContent = file ? `uploading ${file.name}…` : "starting…";
  let job;
  try {
    job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
  } catch (error) {
    card.classList.add("failed");
    status.className = "job-status message error";
    const text = explain(error), name = file ? file.name : source;
    status.textContent = text.startsWith(name) ? text : `${name}: ${text}`;
    if (error.status === 429) status.append(" ", retryButton(error, () => { card.remove(); startJob(file, source); }));
    cancel.hidden = true;
    return;
  }
  watchJob(job, card);
}

// A job the server has (as GET /v1/jobs describes it) shown in its card: Cancel or Stop, then its events, its
// progress and, when it has finished, its result.
function watchJob(job, card) {
  const cancel = $(".job-cancel", card);
  card.dataset.job = job.id;
  cancel.hidden = FINISHED_STATES.includes(job.state);
  cancel.disabled = false;
  cancel.textContent = job.live ? "Stop" : "Cancel";
  cancel.addEventListener("click", () => deleteJob(job, cancel));
  followJob(job, card);
}

// DELETE /v1/jobs/{id}: a job at work is cancelled, a finished one deleted. The button stays disabled once it has
// worked; an error is said and the button can be pressed again. Whether it worked.
async function deleteJob(job, button) {
  button.disabled = true;
  try {
    await api(`/v1/jobs/${job.id}`, { method: "DELETE" });
    return true;
  } catch (error) {
    say(explain(error));
    button.disabled = false;
    return false;
  }
}

// The card showing this job, if the page shows it.
function cardOf(jobId) {
  return [...$("#jobs").children].find((shown) => shown.dataset.job === jobId);
}

// Server-sent events read with fetch (EventSource cannot send an API key), resumed with Last-Event-ID.
async function followJob(job, card) {
  const counts = new Map();
  let lastId = null, finished = false, previewing = false, tries = 0;
  const onEvent = (kind, data) => {
    if (kind === "progress") {
      showProgress(card, data);
      if (!previewing) {
        previewing = true;
        showPreview(job, card);
      }
    } else if (kind === "analytics") {
      countEvent(counts, data);
      showCounts(card, counts);
    } else if (kind === "state") {
      showProgress(card, data);
      card.dataset.state = data.state;
      if (FINISHED_STATES.includes(data.state)) {
        finished = true;
        jobFinished(data, card);
        if (!FINISHED_STATES.includes(job.state)) loadJobList(); // it ended while followed: the list changed
      } else if (data.state === "running" && !previewing && data.live) {
        previewing = true;
        showPreview(job, card);
      }
    }
  };
  while (!finished && tries < 30) {
    try {
      const headers = lastId === null ? {} : { "Last-Event-ID": lastId };
      const response = await api(job.links.events, { headers });
      tries = 0;
      lastId = await readEvents(response, (kind, data, id) => {
        if (id !== null) lastId = id;
        onEvent(kind, data);
      }, lastId);
    } catch (error) {
      tries += 1;
      if (error.status === 404 || error.status === 401) {
        $(".job-status", card).textContent = explain(error);
        return;
      }
    }
    if (!finished) await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function readEvents(response, handle, lastId) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      let kind = "message", data = "", id = null;
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") kind = text;
        else if (field === "data") data += (data ? "\n" : "") + text;
        else if (field === "id") id = text;
      }
      if (id !== null) lastId = id;
      if (data) handle(kind, JSON.parse(data), id);
    }
  }
  return lastId;
}

function showProgress(card, data) {
  const bar = $("progress", card);
  const status = $(".job-status", card);
  const done = data.frames_done || 0;
  if (data.frames_total) {
    bar.max = data.frames_total;
    bar.value = done;
  } else if (!data.state || data.state === "running") {
    bar.removeAttribute("value"); // a live source: no end to measure against
  }
  const speed = data.fps ? `, ${Number(data.fps).toFixed(1)} frames/s` : "";
  const total = data.frames_total ? ` of ${data.frames_total}` : "";
  const state = data.state ? `${data.state}: ` : "";
  status.textContent = `${state}${done}${total} frames${speed}`;
}

function countEvent(counts, data) {
  const event = data.event || {};
  let key = null;
  if (event.event === "cross") key = `${data.model} line ${event.line} ${String(event.direction).replace(/_/g, " ")}`;
  else if (event.event === "enter") key = `${data.model} zone ${event.zone}: entered`;
  else if (event.event === "exit") key = `${data.model} zone ${event.zone}: left`;
  if (key === null) return;
  const perClass = counts.get(key) || new Map();
  perClass.set(event.class, (perClass.get(event.class) || 0) + 1);
  counts.set(key, perClass);
}

function showCounts(card, counts) {
  const list = $(".job-counts", card);
  list.replaceChildren(...[...counts.entries()].map(([key, perClass]) => {
    const total = [...perClass.values()].reduce((a, b) => a + b, 0);
    const parts = [...perClass.entries()].map(([name, n]) => `${n} ${name}`).join(", ");
    return element("li", { text: `${key}: ${total} (${parts})` });
  }));
}

// The MJPEG preview read with fetch (an <img> cannot send an API key): each part becomes the picture shown.
async function showPreview(job, card) {
  const img = $(".job-preview", card);
  let response;
  try {
    response = await api(job.links.preview);
  } catch (_) {
    return;
  }
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  const headEnd = (bytes) => {
    for (let i = 0; i + 3 < bytes.length; i++) {
      if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
    }
    return -1;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    for (;;) {
      const end = headEnd(buffer);
      if (end < 0) break;
      const head = new TextDecoder().decode(buffer.slice(0, end));
      const length = parseInt((head.match(/content-length:\s*(\d+)/i) || [])[1] || "", 10);
      if (!Number.isFinite(length) || buffer.length < end + 4 + length) break;
      const jpeg = buffer.slice(end + 4, end + 4 + length);
      buffer = buffer.slice(end + 4 + length);
      const old = img.src;
      img.src = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
      img.hidden = card.dataset.state === "done";
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    }
  }
}

// A file of the job as a URL the page can use: the API's own URL without a key (so the video streams with Range
// requests), else the file fetched with the key into a blob.
async function fileUrl(url) {
  if (!page.key) return url;
  const response = await api(url);
  return URL.createObjectURL(await response.blob());
}

async function jobFinished(job, card) {
  const status = $(".job-status", card);
  const cancel = $(".job-cancel", card);
  cancel.hidden = true;
  if (job.state === "failed") {
    card.classList.add("failed");
    status.className = "job-status message error";
    status.textContent = `the job failed: ${job.error || "no reason given"}`;
  }
  let files = [];
  try {
    files = await (await api(job.links.files)).json();
  } catch (error) {
    say(explain(error));
    return;
  }
  if (!files.length) return;
  $(".job-preview", card).hidden = true;
  const result = $(".job-result", card);
  result.hidden = false;
  const videos = files.filter((file) => file.name.toLowerCase().endsWith(".mp4"));
  const video = $(".job-video", card);
  if (videos.length) {
    const chosen = videos.find((file) => file.name.includes("_both")) || videos[0];
    video.addEventListener("error", () => {
      const code = video.error ? video.error.code : "?";
      say(`${chosen.name}: this browser cannot play the video (media error ${code}); download it below.`);
    });
    video.src = await fileUrl(chosen.url);
    video.dataset.file = chosen.name;
  } else {
    video.hidden = true;
  }
  const summary = $(".job-summary", card);
  for (const file of files.filter((f) => f.name.endsWith("_summary.json"))) {
    try {
      summary.append(summaryTable(await (await api(file.url)).json()));
    } catch (error) {
      summary.append(element("p", { className: "message error", text: explain(error) }));
    }
  }
  const pictures = $(".job-pictures", card);
  for (const file of files.filter((f) => f.name.endsWith(".png") && !f.name.includes("/"))) {
    const img = element("img", { alt: file.name, loading: "lazy" });
    pictures.append(element("figure", {}, img, element("figcaption", { text: file.name })));
    fileUrl(file.url).then((url) => { img.src = url; }).catch(() => img.remove());
  }
  $(".job-files", card).replaceChildren(...files.map((file) => {
    const link = element("a", { href: file.url, download: baseName(file.name),
      text: `${file.name} (${humanSize(file.size)})` });
    if (page.key) {
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        const anchor = element("a", { href: await fileUrl(file.url), download: baseName(file.name) });
        anchor.click();
      });
    }
    return element("li", {}, link);
  }));
}

function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// The analytics summary of a model (detect_video.py's <name>_<model>_summary.json) as a few lines.
function summaryTable(summary) {
  const rows = [];
  const perClass = (counts) => Object.entries(counts || {}).map(([name, n]) => `${n} ${name}`).join(", ") || "none";
  rows.push(["objects followed", perClass(summary.distinct)]);
  for (const [name, line] of Object.entries(summary.lines || {})) {
    for (const [direction, counts] of Object.entries(line.crossings || {})) {
      rows.push([`line ${name}, ${direction.replace(/_/g, " ")}`, perClass(counts)]);
    }
  }
  for (const [name, zone] of Object.entries(summary.zones || {})) {
    const all = zone.all || {};
    const dwell = all.mean_dwell === null || all.mean_dwell === undefined ? "" :
      `; dwell mean ${Number(all.mean_dwell).toFixed(1)} s, longest ${Number(all.longest_dwell).toFixed(1)} s`;
    rows.push([`zone ${name}`, `entered ${all.entered}, left ${all.left}, present ${all.present}${dwell}`]);
  }
  if (summary.speed) {
    const tracks = summary.speed.tracks || [];
    const mean = tracks.length ? tracks.reduce((a, t) => a + t.mean, 0) / tracks.length : null;
    rows.push(["speeds", tracks.length ? `${tracks.length} tracks, mean ${mean.toFixed(1)} ${summary.speed.unit}`
      : "no track followed long enough"]);
  }
  const table = element("table", { className: "summary" });
  table.append(element("caption", { text: `${summary.model}: ${summary.frames} frames, ${summary.duration} s` }));
  for (const [name, value] of rows) table.append(element("tr", {}, element("th", { text: name }),
    element("td", { text: value })));
  return table;
}

// ------------------------------------------------------------------ earlier videos

// Every job the server has (GET /v1/jobs, newest first), so that a video sent before this page was opened, or from
// another tab, can be found again and opened as the page shows the jobs it starts.
async function loadJobList() {
  const asked = ++page.jobListAsked;
  clearTimeout(page.jobListTimer);
  page.jobListTimer = null;
  const list = $("#earlier-jobs");
  list.setAttribute("aria-busy", "true");
  let jobs, more;
  try {
    const response = await api(`/v1/jobs?limit=${page.jobListLimit}`);
    more = /rel="next"/.test(response.headers.get("Link") || "");
    jobs = await response.json();
  } catch (error) {
    if (asked !== page.jobListAsked) return;
    list.removeAttribute("aria-busy");
    if (page.jobListError) page.jobListError.remove();
    page.jobListError = say(`The earlier videos could not be listed: ${explain(error)}`);
    return;
  }
  if (asked !== page.jobListAsked) return;
  list.removeAttribute("aria-busy");
  if (page.jobListError) {
    page.jobListError.remove();
    page.jobListError = null;
  }
  // A list redrawn under the keyboard's focus gives the focus back to the same job's button.
  const focused = list.contains(document.activeElement) ? document.activeElement.closest("li").dataset.job : null;
  const focusedAction = focused ? document.activeElement.className : null;
  list.replaceChildren(...jobs.map(jobListItem));
  $("#earlier-empty").hidden = jobs.length > 0;
  $("#earlier-older").hidden = !more;
  const again = [...list.children].find((item) => item.dataset.job === focused);
  if (again) (again.getElementsByClassName(focusedAction)[0] || $("button", again)).focus();
  // Progress of the jobs still at work, without a click: read again while one is queued or running.
  if (jobs.some((job) => !FINISHED_STATES.includes(job.state))) {
    page.jobListTimer = setTimeout(() => {
      if (asked === page.jobListAsked && document.visibilityState === "visible") loadJobList();
    }, JOB_LIST_REFRESH_MS);
  }
}

function jobListItem(job) {
  const running = !FINISHED_STATES.includes(job.state);
  const action = running ? "Follow" : "Open";
  const button = element("button", { type: "button", className: "secondary earlier-open",
    "aria-label": `${action} ${job.source}`, text: action });
  button.addEventListener("click", () => openJob(job));
  const removal = running ? (job.live ? "Stop" : "Cancel") : "Delete";
  const remove = element("button", { type: "button", className: "secondary earlier-remove",
    "aria-label": `${removal} ${job.source}`, text: removal });
  remove.addEventListener("click", () => removeJob(job, remove));
  const done = job.frames_done || 0;
  const frames = job.state === "queued" && !done ? "not started"
    : `${done}${job.frames_total ? ` of ${job.frames_total}` : ""} frames`;
  const facts = element("span", { className: "earlier-facts quiet", text: frames });
  if (typeof job.created === "number") {
    const created = new Date(job.created * 1000);
    facts.append(" · ", element("time", { datetime: created.toISOString(), text: created.toLocaleString() }));
  }
  const what = element("div", { className: "earlier-what" },
    element("span", { className: "earlier-name", text: job.source }),
    element("span", { className: `earlier-state ${job.state}`, text: job.state }), facts);
  if (job.state === "failed" && job.error) {
    what.append(element("span", { className: "earlier-error", text: job.error }));
  }
  return element("li", { className: "earlier", "data-job": job.id, "data-state": job.state }, what,
    element("div", { className: "earlier-actions" }, button, remove));
}

// Cancel (or stop) a job at work, which keeps its video so far; delete a finished one with its files, once the
// person has said yes, and take its card away.
async function removeJob(job, button) {
  const finished = FINISHED_STATES.includes(job.state);
  if (finished && !window.confirm(`Delete ${job.source} and its files from the server?`)) return;
  if (!(await deleteJob(job, button))) return;
  if (finished && cardOf(job.id)) cardOf(job.id).remove();
  loadJobList();
}

// An earlier job in a card of its own, shown as the page shows a job it started: its progress as it runs, then the
// drawn video, the summary, the plots and the files. A job already in a card is only brought into view.
function openJob(job) {
  let card = cardOf(job.id);
  if (!card) {
    card = jobCard(job.source);
    card.dataset.state = job.state;
    showProgress(card, job);
    watchJob(job, card);
  }
  const title = $(".job-title", card);
  title.tabIndex = -1;
  title.focus();
}

// ------------------------------------------------------------------ the page's wiring

function takeFiles(files) {
  const list = [...files];
  if (!list.length) return;
  for (const file of list) {
    if (isVideo(file)) startJob(file, null);
    else addPicture(file);
  }
}

function wire() {
  const input = $("#file-input");
  input.addEventListener("change", () => {
    takeFiles(input.files);
    input.value = "";
  });
  const zone = $("#drop-zone");
  zone.tabIndex = 0;
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    document.addEventListener(name, (event) => {
      event.preventDefault();
      if (name === "drop" || event.target === zone) zone.classList.remove("dragging");
    });
  }
  document.addEventListener("drop", (event) => {
    if (event.dataTransfer && event.dataTransfer.files.length) takeFiles(event.dataTransfer.files);
  });
  $("#threshold-range").addEventListener("input", (event) => {
    setThreshold(event.target.value);
    $("#threshold-number").value = String(page.threshold);
    refreshAll();
    refreshClassFilter();
  });
  $("#threshold-number").addEventListener("input", (event) => {
    if (event.target.value === "" || !Number.isFinite(Number(event.target.value))) return;
    setThreshold(event.target.value);
    refreshAll();
    refreshClassFilter();
  });
  $("#class-filter").addEventListener("change", (event) => {
    page.classFilter = event.target.value;
    refreshAll();
  });
  $("#mark-differences").addEventListener("change", (event) => {
    page.markDifferences = event.target.checked;
    refreshAll();
  });
  $("#model-select").addEventListener("change", redetectAll);
  $("#source-form").addEventListener("submit", () => {
    const source = $("#source-input").value.trim();
    if (!source) {
      say("Give a stream URL or a path on the server first.");
      $("#source-input").focus();
      return;
    }
    startJob(null, source);
  });
  $("#key-input").value = page.key;
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    page.key = $("#key-input").value.trim();
    if (page.key) sessionStorage.setItem(KEY_STORAGE, page.key);
    else sessionStorage.removeItem(KEY_STORAGE);
    $("#key-box").open = false;
    loadModels();
    loadJobList();
  });
  $("#earlier-refresh").addEventListener("click", loadJobList);
  $("#earlier-older").addEventListener("click", () => {
    page.jobListLimit += JOB_LIST_PAGE;
    loadJobList();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && page.jobListTimer !== null) loadJobList();
  });
}

wire();
loadModels();
loadJobList();
