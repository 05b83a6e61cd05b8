// lookalike explorer: plain JS over the REST API (no framework, no CDN, works offline).
"use strict";

const PAGE_SIZE = 60;
const DUP_PAGE = 20;

// A bearer token arrives in the URL fragment (never sent to the server by the browser); keep it for this tab only.
const tokenMatch = location.hash.match(/token=([^&]+)/);
if (tokenMatch) {
  sessionStorage.setItem("lookalike-token", decodeURIComponent(tokenMatch[1]));
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("lookalike-token");
const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};

const $ = (id) => document.getElementById(id);
const state = { offset: 0, total: 0, summary: null, dupOffset: 0, dupThreshold: null, mapData: null, current: null };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(`/api${path}`, { ...options, headers: { ...authHeaders, ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

// ------------------------------------------------------------------ thumbnails, loaded when they scroll into view
function loadThumb(img) {
  const src = img.dataset.src;
  if (!src || img.dataset.loaded) return;
  img.dataset.loaded = "1";
  if (!token) { img.src = src; return; }
  fetch(src, { headers: authHeaders })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.statusText))))
    .then((blob) => { img.src = URL.createObjectURL(blob); })
    .catch(() => { img.alt = "(no image)"; });
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { observer.unobserve(entry.target); loadThumb(entry.target); }
    }
  }, { rootMargin: "300px" })
  : null;

function thumbImage(index, alt) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = alt;
  img.decoding = "async";
  img.dataset.src = `/api/references/${index}/thumbnail`;
  if (observer) observer.observe(img); else loadThumb(img);
  return img;
}

function tile(item, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = item.index;
  button.title = item.path || String(item.label);
  button.appendChild(thumbImage(item.index, String(item.label)));
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = item.path ? `${item.label} · ${item.path.split(/[\\/]/).pop()}` : String(item.label);
  if (item.distance !== undefined) {
    const distance = document.createElement("span");
    distance.className = "distance";
    if (item.keeper !== undefined) {
      const tier = item.tier ? `${item.tier} · ` : "";
      distance.textContent = item.keeper ? `keep · ${tier}` : `${tier}${item.distance.toFixed(3)} `;
      if (item.tier) button.dataset.tier = item.tier;
      if (item.keeper) button.classList.add("keeper");
    } else {
      distance.textContent = `#${item.rank} · ${item.distance.toFixed(3)} `;
    }
    caption.prepend(distance);
  }
  button.appendChild(caption);
  button.addEventListener("click", () => onClick(item));
  return button;
}

function fill(container, items, onClick) {
  container.replaceChildren(...items.map((item) => tile(item, onClick)));
}

// ------------------------------------------------------------------ views
function showView(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.view === name));
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  showError("");
  if (name === "duplicates" && !$("duplicates").dataset.loaded) loadDuplicates();
  if (name === "map") loadMap();
}

async function loadPage(offset) {
  try {
    const page = await api(`/references?offset=${offset}&limit=${PAGE_SIZE}`);
    state.offset = page.offset;
    state.total = page.total;
    fill($("grid"), page.items, openNeighbours);
    const last = Math.min(page.offset + page.items.length, page.total);
    $("page-info").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no references";
    $("prev").disabled = page.offset === 0;
    $("next").disabled = last >= page.total;
  } catch (error) { showError(`Could not list the references (${error.message})`); }
}

async function openNeighbours(item) {
  state.current = item;
  const panel = $("neighbours-panel");
  panel.hidden = false;
  const k = $("k").value;
  const card = $("neighbours-query");
  const caption = document.createElement("p");
  caption.className = "muted";
  caption.textContent = `${item.label}${item.path ? ` — ${item.path}` : ""}`;
  card.replaceChildren(thumbImage(item.index, String(item.label)), caption);
  $("neighbours").replaceChildren();
  try {
    const result = await api(`/references/${item.index}/neighbours?k=${k}`);
    fill($("neighbours"), result.neighbours, openNeighbours);
  } catch (error) { showError(`Could not find neighbours (${error.message})`); }
}

async function upload(file) {
  if (!file) return;
  showError("");
  const preview = $("upload-image");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("upload-preview").hidden = false;
  $("upload-info").textContent = `${file.name} — searching…`;
  $("results").replaceChildren();
  const form = new FormData();
  form.append("image", file);
  try {
    const result = await api(`/query?k=${$("k").value}`, { method: "POST", body: form });
    $("upload-info").textContent = `${file.name} (${result.upload.width}×${result.upload.height} ${result.upload.format}): ${result.neighbours.length} nearest references`;
    fill($("results"), result.neighbours, openNeighbours);
  } catch (error) {
    $("upload-info").textContent = file.name;
    showError(`Search failed (${error.message})`);
  }
}

async function loadDuplicates() {
  const container = $("duplicates");
  container.dataset.loaded = "1";
  const threshold = state.dupThreshold === null ? "" : `&threshold=${state.dupThreshold}`;
  const tiers = $("dup-tiers").value.split(",").filter(Boolean).map((t) => `&tiers=${t}`).join("");
  try {
    const result = await api(`/duplicates?offset=${state.dupOffset}&limit=${DUP_PAGE}${threshold}${tiers}`);
    state.dupThreshold = result.threshold;
    $("dup-threshold").value = Number(result.threshold.toFixed(4));
    const near = result.nearest;
    $("dup-info").textContent = `${result.total} groups at ${result.threshold.toFixed(3)} ` +
      `(nearest-neighbour distances: 1% ${near.p1.toFixed(2)}, 5% ${near.p5.toFixed(2)}, median ${near.p50.toFixed(2)})`;
    const groups = result.groups.map((group, i) => {
      const box = document.createElement("div");
      box.className = "group";
      const title = document.createElement("h3");
      const farthest = Math.max(...group.members.map((m) => m.distance));
      title.textContent = `Group ${result.offset + i + 1}: ${group.size} images, farthest ${farthest.toFixed(3)} from the one to keep`;
      const grid = document.createElement("div");
      grid.className = "grid";
      fill(grid, group.members, openNeighbours);
      box.append(title, grid);
      return box;
    });
    if (!groups.length) {
      const empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = "No near-duplicates at this threshold: raise it to group more loosely.";
      groups.push(empty);
    }
    container.replaceChildren(...groups);
    $("dup-prev").disabled = result.offset === 0;
    $("dup-next").disabled = result.offset + result.groups.length >= result.total;
  } catch (error) { showError(`Could not group duplicates (${error.message})`); }
}

// ------------------------------------------------------------------ map
function mapPoints() {
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(rect.width * ratio));
  canvas.height = Math.max(1, Math.round(rect.height * ratio));
  const data = state.mapData;
  const pad = 12;
  const [minX, maxX] = [Math.min(...data.x), Math.max(...data.x)];
  const [minY, maxY] = [Math.min(...data.y), Math.max(...data.y)];
  const sx = (rect.width - 2 * pad) / ((maxX - minX) || 1);
  const sy = (rect.height - 2 * pad) / ((maxY - minY) || 1);
  // Screen coordinates in CSS pixels; y grows downwards.
  return data.x.map((x, i) => ({ i, px: pad + (x - minX) * sx, py: rect.height - pad - (data.y[i] - minY) * sy }));
}

function drawMap() {
  if (!state.mapData) return;
  const canvas = $("map");
  state.points = mapPoints();
  const ratio = window.devicePixelRatio || 1;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "rgba(37, 87, 214, 0.65)";
  for (const p of state.points) { ctx.beginPath(); ctx.arc(p.px, p.py, 3.5, 0, 2 * Math.PI); ctx.fill(); }
}

async function loadMap() {
  if (!state.mapData) {
    try { state.mapData = await api("/map?limit=5000"); } catch (error) { showError(`Could not draw the map (${error.message})`); return; }
    const share = state.mapData.explained_variance.map((v) => `${(100 * v).toFixed(1)}%`).join(" + ");
    $("map-info").textContent = `${state.mapData.index.length} of ${state.mapData.total} references on the first two principal axes (${share} of the variance). Hover for the image, click for its neighbours.`;
  }
  drawMap();
}

function nearestPoint(event) {
  if (!state.points) return null;
  const rect = $("map").getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  let best = null;
  let bestDistance = 12 * 12;
  for (const p of state.points) {
    const d = (p.px - x) ** 2 + (p.py - y) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  return best && { point: best, x, y };
}

function hoverMap(event) {
  const tip = $("map-tip");
  const hit = nearestPoint(event);
  if (!hit) { tip.hidden = true; return; }
  const index = state.mapData.index[hit.point.i];
  const img = tip.querySelector("img");
  if (img.dataset.index !== String(index)) {
    img.dataset.index = String(index);
    delete img.dataset.loaded;
    img.dataset.src = `/api/references/${index}/thumbnail`;
    img.removeAttribute("src");
    loadThumb(img);
    tip.querySelector("span").textContent = String(state.mapData.label[hit.point.i]);
  }
  const width = $("map").getBoundingClientRect().width;
  tip.style.left = `${Math.min(hit.x + 14, width - 150)}px`;
  tip.style.top = `${hit.y + 14}px`;
  tip.hidden = false;
}

async function clickMap(event) {
  const hit = nearestPoint(event);
  if (!hit) return;
  try { openNeighbours(await api(`/references/${state.mapData.index[hit.point.i]}`)); } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ start
async function start() {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  $("prev").addEventListener("click", () => loadPage(Math.max(0, state.offset - PAGE_SIZE)));
  $("next").addEventListener("click", () => loadPage(state.offset + PAGE_SIZE));
  $("close-panel").addEventListener("click", () => { $("neighbours-panel").hidden = true; });
  $("k").addEventListener("change", () => { if (state.current && !$("neighbours-panel").hidden) openNeighbours(state.current); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("neighbours-panel").hidden = true; });

  $("upload-input").addEventListener("change", (e) => upload(e.target.files[0]));
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); upload(e.dataTransfer.files[0]); });

  $("dup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = parseFloat($("dup-threshold").value);
    state.dupThreshold = Number.isFinite(value) && value >= 0 ? value : null;
    state.dupOffset = 0;
    loadDuplicates();
  });
  $("dup-prev").addEventListener("click", () => { state.dupOffset = Math.max(0, state.dupOffset - DUP_PAGE); loadDuplicates(); });
  $("dup-next").addEventListener("click", () => { state.dupOffset += DUP_PAGE; loadDuplicates(); });

  const canvas = $("map");
  canvas.addEventListener("mousemove", hoverMap);
  canvas.addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  canvas.addEventListener("click", clickMap);
  window.addEventListener("resize", drawMap);

  try {
    const summary = await api("/summary");
    state.summary = summary;
    $("summary").textContent = `${summary.num_references} references · ${summary.model} · ${summary.metric}`;
    if (!summary.can_query_images) $("dropzone").querySelector("span").textContent = "This model holds precomputed embeddings: it cannot search by photo.";
  } catch (error) { showError(`Cannot reach the API (${error.message})`); return; }
  loadPage(0);
}

start();
