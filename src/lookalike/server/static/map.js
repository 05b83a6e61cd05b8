// The map view: the references laid out so that images that look alike lie close together (t-SNE, or PCA without
// the map extra), coloured by cluster or by a column. Drag to pan, wheel or +/- to zoom; zoomed in, thumbnails
// replace the dots; a lasso (shift+drag, or the Lasso button) lists what it encloses; the URL keeps the view.
"use strict";

import {
  $, api, baseName, fetchBitmap, fill, loadThumb, openReference, route, showError, thumbnailURL, updateRoute,
} from "./common.js";

const LIMIT = 100000; // the server's cap: the whole collection up to there, an even sample beyond
const PAD = 16; // CSS pixels around the whole map at zoom 1
const MIN_ZOOM = 0.25;
const MAX_ZOOM = 500;
const STEP = 1.6; // one press of + or -
const THUMB_MIN = 24; // thumbnails replace dots once they would be at least this wide (CSS pixels)
const THUMB_MAX = 112;
const MAX_THUMBS = 200; // thumbnails drawn at once: those nearest the centre of the view
const THUMB_WIDTH = 128; // thumbnails are decoded at this width: ~64 kB each
const THUMB_CACHE = 600; // decoded thumbnails kept, least recently drawn dropped first
const FETCHES = 6; // thumbnail requests in flight
const TILES = 200; // selected references shown as tiles
const SQUARE_BELOW = 2.5; // dots of a smaller radius are drawn as squares
const CLICK_SLOP = 4; // a press that moves less than this many pixels is a click, not a drag
const NONE = "#9a9aa0"; // points without a value
// A numeric column runs from dark blue to yellow (viridis' ends and middle), in as many steps.
const RAMP = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];

const map = {
  data: null, // the /api/map answer
  points: null, // the points drawn (those in view): {i, px, py} in CSS pixels from the canvas' corner; i indexes data
  thumbs: [], // the points drawn as thumbnails: {i, px, py, size}
  view: { x: 0, y: 0, zoom: 1 }, // the layout point at the canvas' centre, and the zoom (1: the whole map fits)
  colors: [], // the CSS colour of each point, by data position
  selection: [], // data positions inside the last lasso
  lasso: false, // the Lasso button is on: a plain drag draws a lasso
};
// Where the points are drawn, for scripts driving the page (the browser tests) to find them.
window.lookalikeMap = map;

const geometry = { minX: 0, maxX: 1, minY: 0, maxY: 1, cell: 1 };
const paint = { index: new Int32Array(0), palette: [], rgba: new Uint32Array(0) }; // colours as palette indices
const bitmaps = new Map(); // reference index -> ImageBitmap, null while loading, false when it failed
let wanted = [];
let inFlight = 0;
let gesture = null; // the press being dragged: {kind: "pan" | "lasso", ...}
let frameRequested = false;
let routeTimer = 0;

// ------------------------------------------------------------------ geometry: layout units <-> CSS pixels
function size() {
  const rect = $("map").getBoundingClientRect();
  return { w: rect.width, h: rect.height };
}

function scale(w, h) {
  const fit = Math.min((w - 2 * PAD) / (geometry.maxX - geometry.minX || 1), (h - 2 * PAD) / (geometry.maxY - geometry.minY || 1));
  return Math.max(fit, 1e-9) * map.view.zoom;
}

function toScreen(x, y, w, h, s) {
  return [w / 2 + (x - map.view.x) * s, h / 2 - (y - map.view.y) * s];
}

function toLayout(px, py, w, h, s) {
  return [map.view.x + (px - w / 2) / s, map.view.y - (py - h / 2) / s];
}

function measure() {
  const { x, y } = map.data;
  let [minX, maxX, minY, maxY] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < x.length; i++) {
    minX = Math.min(minX, x[i]); maxX = Math.max(maxX, x[i]);
    minY = Math.min(minY, y[i]); maxY = Math.max(maxY, y[i]);
  }
  if (!x.length) [minX, maxX, minY, maxY] = [0, 1, 0, 1];
  // Each point's share of the map's area, as a square: what a thumbnail may cover before they pile up.
  const cell = Math.sqrt(((maxX - minX || 1) * (maxY - minY || 1)) / Math.max(1, x.length));
  Object.assign(geometry, { minX, maxX, minY, maxY, cell });
}

function fitView() {
  map.view = { x: (geometry.minX + geometry.maxX) / 2, y: (geometry.minY + geometry.maxY) / 2, zoom: 1 };
}

// ------------------------------------------------------------------ colours and legend
function categoryColor(number, name) {
  if (name === "(none)") return NONE;
  // Golden-angle hues, alternating lightness: neighbouring numbers never look alike.
  return `hsl(${Math.round((number * 137.508) % 360)}, 68%, ${number % 2 ? 40 : 54}%)`;
}

function colour() {
  const color = map.data.color;
  const n = map.data.index.length;
  paint.index = new Int32Array(n);
  if (color.kind === "category") {
    paint.palette = color.categories.map((name, k) => categoryColor(k, name));
    for (let i = 0; i < n; i++) paint.index[i] = color.values[i];
  } else {
    paint.palette = [...RAMP, NONE];
    const span = color.max - color.min || 1;
    for (let i = 0; i < n; i++) {
      const v = color.values[i];
      paint.index[i] = v === null ? RAMP.length : Math.round(((v - color.min) / span) * (RAMP.length - 1));
    }
  }
  map.colors = Array.from(paint.index, (k) => paint.palette[k]);
  paint.rgba = pixelValues(paint.palette);
  legend();
}

function pixelValues(palette) {
  // Each CSS colour as the 32-bit value of an opaque RGBA pixel (read back from a canvas: the browser parses it).
  const probe = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
  const bytes = new Uint8ClampedArray(4 * palette.length);
  palette.forEach((css, k) => {
    probe.clearRect(0, 0, 1, 1);
    probe.fillStyle = css;
    probe.fillRect(0, 0, 1, 1);
    bytes.set(probe.getImageData(0, 0, 1, 1).data, 4 * k);
  });
  return new Uint32Array(bytes.buffer); // in the machine's byte order, as ImageData's pixels are read back
}

function swatch(css) {
  const box = document.createElement("span");
  box.className = "swatch";
  box.style.background = css;
  return box;
}

function legend() {
  const color = map.data.color;
  const box = $("map-legend");
  if (color.kind === "category") {
    box.replaceChildren(...color.categories.map((name, k) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.dataset.category = name;
      const count = document.createElement("span");
      count.className = "muted";
      count.textContent = String(color.counts[k]);
      item.append(swatch(paint.palette[k]), `${name} `, count);
      return item;
    }));
  } else {
    const low = document.createElement("span");
    low.textContent = color.min === null ? "" : String(Number(color.min.toPrecision(4)));
    const high = document.createElement("span");
    high.textContent = color.max === null ? "" : String(Number(color.max.toPrecision(4)));
    const ramp = swatch(`linear-gradient(to right, ${RAMP.join(", ")})`);
    ramp.classList.add("ramp");
    box.replaceChildren(`${color.column}: `, low, ramp, high);
  }
}

// ------------------------------------------------------------------ thumbnails for the canvas
// ``points``: positions in map.data; the bitmaps are kept by reference index.
function want(points) {
  wanted = points.filter((i) => !bitmaps.has(map.data.index[i]));
  pump();
}

function pump() {
  while (inFlight < FETCHES && wanted.length) {
    const i = wanted.shift();
    const index = map.data.index[i];
    if (bitmaps.has(index)) continue;
    bitmaps.set(index, null);
    inFlight += 1;
    fetchBitmap(thumbnailURL(index, map.data.version[i]), THUMB_WIDTH)
      .then((bitmap) => { bitmaps.set(index, bitmap); forget(); })
      .catch(() => { bitmaps.set(index, false); })
      .finally(() => { inFlight -= 1; requestDraw(); pump(); });
  }
}

function forget() {
  // A Map iterates in insertion order and drawing re-inserts what it uses: the first entries were drawn longest ago.
  for (const [index, bitmap] of bitmaps) {
    if (bitmaps.size <= THUMB_CACHE) break;
    if (bitmap === null) continue; // still loading
    if (bitmap) bitmap.close();
    bitmaps.delete(index);
  }
}

function drawThumb(ctx, bitmap, p, css) {
  const box = p.size;
  const ratio = bitmap.width / bitmap.height;
  const [w, h] = ratio >= 1 ? [box, box / ratio] : [box * ratio, box];
  ctx.fillStyle = css;
  ctx.fillRect(p.px - w / 2 - 2, p.py - h / 2 - 2, w + 4, h + 4); // a frame in the point's colour
  ctx.drawImage(bitmap, p.px - w / 2, p.py - h / 2, w, h);
}

// ------------------------------------------------------------------ drawing
function squares(ctx, points, radius, ratio, cw, ch) {
  // Many small dots are written into the pixels directly: a canvas path of 100,000 of them took 140 ms to fill
  // (300 ms as circles) in software, this takes a few.
  const image = ctx.createImageData(cw, ch);
  const pixels = new Uint32Array(image.data.buffer);
  const side = Math.max(1, Math.round(2 * radius * ratio));
  for (const p of points) {
    const colour = paint.rgba[paint.index[p.i]];
    const left = Math.round(p.px * ratio - side / 2);
    const top = Math.round(p.py * ratio - side / 2);
    for (let row = Math.max(0, top); row < Math.min(ch, top + side); row++) {
      pixels.fill(colour, row * cw + Math.max(0, left), row * cw + Math.min(cw, left + side));
    }
  }
  ctx.putImageData(image, 0, 0);
}

function requestDraw() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => { frameRequested = false; drawMap(); });
}

function drawMap() {
  if (!map.data || $("view-map").hidden) return;
  const canvas = $("map");
  const { w, h } = size();
  const ratio = window.devicePixelRatio || 1;
  const [cw, ch] = [Math.max(1, Math.round(w * ratio)), Math.max(1, Math.round(h * ratio))];
  if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const s = scale(w, h);
  const { x, y } = map.data;
  const thumbSize = Math.min(THUMB_MAX, 0.8 * geometry.cell * s);
  const radius = Math.max(1.5, Math.min(5, 0.3 * geometry.cell * s));
  const margin = Math.max(radius, thumbSize / 2);
  const points = [];
  for (let i = 0; i < x.length; i++) {
    const [px, py] = toScreen(x[i], y[i], w, h, s);
    if (px >= -margin && px <= w + margin && py >= -margin && py <= h + margin) points.push({ i, px, py });
  }
  map.points = points;

  if (radius < SQUARE_BELOW) {
    squares(ctx, points, radius, ratio, cw, ch);
  } else { // one path per colour: thousands of fills of their own would take long
    const byColour = paint.palette.map(() => []);
    for (const p of points) byColour[paint.index[p.i]].push(p);
    byColour.forEach((group, k) => {
      if (!group.length) return;
      ctx.fillStyle = paint.palette[k];
      ctx.beginPath();
      for (const p of group) { ctx.moveTo(p.px + radius, p.py); ctx.arc(p.px, p.py, radius, 0, 2 * Math.PI); }
      ctx.fill();
    });
  }

  map.thumbs = [];
  if (thumbSize >= THUMB_MIN) {
    const near = points
      .map((p) => ({ ...p, d: (p.px - w / 2) ** 2 + (p.py - h / 2) ** 2 }))
      .sort((a, b) => a.d - b.d)
      .slice(0, MAX_THUMBS);
    want(near.map((p) => p.i));
    for (const p of near.reverse()) { // the nearest to the centre drawn last, on top
      const index = map.data.index[p.i];
      const bitmap = bitmaps.get(index);
      if (!bitmap) continue;
      bitmaps.delete(index); bitmaps.set(index, bitmap); // most recently drawn
      const thumb = { i: p.i, px: p.px, py: p.py, size: thumbSize };
      drawThumb(ctx, bitmap, thumb, map.colors[p.i]);
      map.thumbs.push(thumb);
    }
  } else {
    want([]);
  }

  if (map.selection.length) {
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    const ring = Math.max(radius + 2, thumbSize >= THUMB_MIN ? thumbSize / 2 + 3 : 0);
    for (const i of map.selection) {
      const [px, py] = toScreen(x[i], y[i], w, h, s);
      ctx.moveTo(px + ring, py);
      ctx.arc(px, py, ring, 0, 2 * Math.PI);
    }
    ctx.stroke();
  }
  if (gesture && gesture.kind === "lasso" && gesture.path.length > 1) {
    ctx.strokeStyle = "#2557d6";
    ctx.fillStyle = "rgba(37, 87, 214, 0.08)";
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    gesture.path.forEach(([px, py], k) => (k ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
    ctx.closePath();
    ctx.fill();
    ctx.stroke();
    ctx.setLineDash([]);
  }
}

// ------------------------------------------------------------------ the URL of this view
function saveRoute() {
  clearTimeout(routeTimer);
  routeTimer = setTimeout(() => {
    if ($("view-map").hidden) return;
    const { x, y, zoom } = map.view;
    const color = map.data ? map.data.color.column : "cluster";
    updateRoute({
      view: "map",
      mx: Number(x.toPrecision(6)),
      my: Number(y.toPrecision(6)),
      mz: Number(zoom.toPrecision(4)),
      color: color === "cluster" ? null : color,
    });
  }, 150);
}

function setView(x, y, zoom) {
  map.view = { x, y, zoom: Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom)) };
  requestDraw();
  saveRoute();
}

function zoomAt(factor, px, py) {
  // The layout point under (px, py) stays under it.
  const { w, h } = size();
  const [lx, ly] = toLayout(px, py, w, h, scale(w, h));
  const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, map.view.zoom * factor));
  map.view.zoom = zoom;
  const s = scale(w, h);
  setView(lx - (px - w / 2) / s, ly + (py - h / 2) / s, zoom);
}

// ------------------------------------------------------------------ loading
async function load(color) {
  $("map-info").textContent = "Computing the map… (a t-SNE of thousands of references takes a minute, once)";
  const data = await api(`/map?limit=${LIMIT}&color=${encodeURIComponent(color)}`);
  const first = !map.data;
  map.data = data;
  if (first) {
    measure();
    fitView();
  }
  const select = $("map-color");
  select.replaceChildren(...data.columns.map((name) => new Option(name, name)));
  select.value = data.color.column;
  colour();
  describe();
}

function describe() {
  const data = map.data;
  const count = data.index.length === data.total ? `${data.total} references` : `${data.index.length} of ${data.total} references (an even sample)`;
  let how;
  if (data.method === "tsne") {
    how = `t-SNE map, ${data.saved ? "saved with the model" : `computed in ${data.seconds.toFixed(1)} s`}: neighbours lie close together`;
  } else {
    const share = data.explained_variance.map((v) => `${(100 * v).toFixed(1)}%`).join(" + ");
    how = `the first two principal axes (${share} of the variance)`;
  }
  const help = "Drag to move, wheel or +/− to zoom, shift+drag or Lasso to select; click for neighbours.";
  $("map-info").textContent = `${count} · ${how} · ${data.clusters} clusters. ${data.note ? `${data.note}. ` : ""}${help}`;
}

export async function showMap() {
  if (!map.data) {
    const params = route();
    try {
      await load(params.get("color") || "cluster");
    } catch (error) { showError(`Could not draw the map (${error.message})`); return; }
    // A shared URL opens the same place at the same zoom.
    const [x, y, zoom] = ["mx", "my", "mz"].map((key) => Number.parseFloat(params.get(key)));
    if ([x, y, zoom].every(Number.isFinite) && zoom > 0) map.view = { x, y, zoom: Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom)) };
  }
  drawMap();
  saveRoute();
}

async function recolour() {
  try { await load($("map-color").value); } catch (error) { showError(`Could not colour the map (${error.message})`); return; }
  requestDraw();
  saveRoute();
}

// ------------------------------------------------------------------ pointer: hover, click, pan, lasso
function pointer(event) {
  const rect = $("map").getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function nearestPoint(px, py) {
  if (!map.points) return null;
  const reach = Math.max(12, map.thumbs.length ? map.thumbs[0].size / 2 : 0);
  let best = null;
  let bestDistance = reach * reach;
  for (const p of map.points) {
    const d = (p.px - px) ** 2 + (p.py - py) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  return best;
}

function showTip(px, py) {
  const tip = $("map-tip");
  const hit = nearestPoint(px, py);
  if (!hit) { tip.hidden = true; return; }
  const index = map.data.index[hit.i];
  const img = tip.querySelector("img");
  if (img.dataset.index !== String(index)) {
    img.dataset.index = String(index);
    delete img.dataset.loaded;
    img.dataset.src = thumbnailURL(index, map.data.version[hit.i]);
    img.removeAttribute("src");
    loadThumb(img);
    // The file, not a row number: its name (the whole path on hover), as the grid's captions.
    const path = map.data.path ? map.data.path[hit.i] : null;
    const caption = tip.querySelector("span");
    caption.textContent = path ? baseName(path) : String(map.data.label[hit.i]);
    caption.title = path || "";
  }
  const { w, h } = size();
  tip.hidden = false;
  // Below and right of the pointer, else above or left of it: the tip stays inside the map, never over its edge.
  const [tw, th] = [tip.offsetWidth, tip.offsetHeight];
  tip.style.left = `${px + 14 + tw <= w ? px + 14 : Math.max(0, px - 14 - tw)}px`;
  tip.style.top = `${py + 14 + th <= h ? py + 14 : Math.max(0, py - 14 - th)}px`;
}

function inside(path, px, py) {
  // Even-odd rule: a ray to the right crosses the outline an odd number of times from inside.
  let odd = false;
  for (let a = 0, b = path.length - 1; a < path.length; b = a++) {
    const [ax, ay] = path[a];
    const [bx, by] = path[b];
    if ((ay > py) !== (by > py) && px < ((bx - ax) * (py - ay)) / (by - ay) + ax) odd = !odd;
  }
  return odd;
}

function select(path) {
  const { w, h } = size();
  const s = scale(w, h);
  const { x, y } = map.data;
  map.selection = [];
  for (let i = 0; i < x.length; i++) {
    const [px, py] = toScreen(x[i], y[i], w, h, s);
    if (inside(path, px, py)) map.selection.push(i);
  }
  showSelection();
}

function showSelection() {
  const chosen = map.selection;
  $("map-selection-bar").hidden = !chosen.length;
  const shown = chosen.slice(0, TILES);
  $("map-selection-info").textContent = chosen.length > TILES
    ? `${chosen.length} references selected; the first ${TILES} are shown`
    : `${chosen.length} references selected`;
  const items = shown.map((i) => ({
    index: map.data.index[i],
    label: map.data.label[i],
    path: map.data.path ? map.data.path[i] : null,
    version: map.data.version[i],
  }));
  fill($("map-selection"), items, (item) => openReference(item.index));
  requestDraw();
}

function press(event) {
  if (event.button !== 0 || !map.data) return;
  $("map").setPointerCapture(event.pointerId);
  const [px, py] = pointer(event);
  $("map-tip").hidden = true;
  gesture = event.shiftKey || map.lasso
    ? { kind: "lasso", path: [[px, py]] }
    : { kind: "pan", start: [px, py], view: { ...map.view }, moved: false };
}

function move(event) {
  const [px, py] = pointer(event);
  if (!gesture) { if (map.data) showTip(px, py); return; }
  if (gesture.kind === "lasso") {
    gesture.path.push([px, py]);
    requestDraw();
    return;
  }
  const [dx, dy] = [px - gesture.start[0], py - gesture.start[1]];
  if (!gesture.moved && dx * dx + dy * dy < CLICK_SLOP * CLICK_SLOP) return;
  gesture.moved = true;
  const { w, h } = size();
  const s = scale(w, h);
  setView(gesture.view.x - dx / s, gesture.view.y + dy / s, gesture.view.zoom);
}

function release(event) {
  if (!gesture) return;
  const done = gesture;
  gesture = null;
  const [px, py] = pointer(event);
  if (done.kind === "lasso") {
    if (done.path.length > 2) select(done.path);
    requestDraw();
  } else if (!done.moved) {
    const hit = nearestPoint(px, py);
    if (hit) openReference(map.data.index[hit.i]);
  }
}

export function initMap() {
  const canvas = $("map");
  canvas.addEventListener("pointerdown", press);
  canvas.addEventListener("pointermove", move);
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", () => { gesture = null; requestDraw(); });
  canvas.addEventListener("pointerleave", () => { $("map-tip").hidden = true; });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [px, py] = pointer(event);
    zoomAt(Math.exp(-event.deltaY * 0.002), px, py);
  }, { passive: false });
  const centre = (factor) => { const { w, h } = size(); zoomAt(factor, w / 2, h / 2); };
  $("map-zoom-in").addEventListener("click", () => centre(STEP));
  $("map-zoom-out").addEventListener("click", () => centre(1 / STEP));
  $("map-fit").addEventListener("click", () => { fitView(); setView(map.view.x, map.view.y, 1); });
  $("map-lasso").addEventListener("click", () => {
    map.lasso = !map.lasso;
    $("map-lasso").setAttribute("aria-pressed", String(map.lasso));
  });
  $("map-clear").addEventListener("click", () => { map.selection = []; showSelection(); });
  $("map-color").addEventListener("change", recolour);
  window.addEventListener("resize", requestDraw);
  // An apply or undo moves references to other positions: the points, their thumbnails and the lasso's tiles
  // would name other files. Forget them; the map is fetched again (the same place kept) when it is next shown.
  document.addEventListener("lookalike:references-changed", () => {
    map.data = null;
    map.points = null;
    map.selection = [];
    bitmaps.clear();
    wanted = [];
    showSelection();
    if (!$("view-map").hidden) showMap();
  });
}
