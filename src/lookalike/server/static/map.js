// The map view: every reference (or an even sample) as a point on a 2-D layout of the embeddings.
"use strict";

import { $, api, loadThumb, openReference, showError } from "./common.js";

const map = { data: null, points: null };
// Where the points are drawn, for scripts driving the page (the browser tests) to find them.
window.lookalikeMap = map;

function mapPoints() {
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(rect.width * ratio));
  canvas.height = Math.max(1, Math.round(rect.height * ratio));
  const data = map.data;
  const pad = 12;
  const [minX, maxX] = [Math.min(...data.x), Math.max(...data.x)];
  const [minY, maxY] = [Math.min(...data.y), Math.max(...data.y)];
  const sx = (rect.width - 2 * pad) / ((maxX - minX) || 1);
  const sy = (rect.height - 2 * pad) / ((maxY - minY) || 1);
  // Screen coordinates in CSS pixels; y grows downwards.
  return data.x.map((x, i) => ({ i, px: pad + (x - minX) * sx, py: rect.height - pad - (data.y[i] - minY) * sy }));
}

function drawMap() {
  if (!map.data || $("view-map").hidden) return;
  const canvas = $("map");
  map.points = mapPoints();
  const ratio = window.devicePixelRatio || 1;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "rgba(37, 87, 214, 0.65)";
  for (const p of map.points) { ctx.beginPath(); ctx.arc(p.px, p.py, 3.5, 0, 2 * Math.PI); ctx.fill(); }
}

export async function showMap() {
  if (!map.data) {
    try { map.data = await api("/map?limit=5000"); } catch (error) { showError(`Could not draw the map (${error.message})`); return; }
    const share = map.data.explained_variance.map((v) => `${(100 * v).toFixed(1)}%`).join(" + ");
    $("map-info").textContent = `${map.data.index.length} of ${map.data.total} references on the first two principal axes (${share} of the variance). Hover for the image, click for its neighbours.`;
  }
  drawMap();
}

function nearestPoint(event) {
  if (!map.points) return null;
  const rect = $("map").getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  let best = null;
  let bestDistance = 12 * 12;
  for (const p of map.points) {
    const d = (p.px - x) ** 2 + (p.py - y) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  return best && { point: best, x, y };
}

function hoverMap(event) {
  const tip = $("map-tip");
  const hit = nearestPoint(event);
  if (!hit) { tip.hidden = true; return; }
  const index = map.data.index[hit.point.i];
  const img = tip.querySelector("img");
  if (img.dataset.index !== String(index)) {
    img.dataset.index = String(index);
    delete img.dataset.loaded;
    img.dataset.src = `/api/references/${index}/thumbnail`;
    img.removeAttribute("src");
    loadThumb(img);
    tip.querySelector("span").textContent = String(map.data.label[hit.point.i]);
  }
  const width = $("map").getBoundingClientRect().width;
  tip.style.left = `${Math.min(hit.x + 14, width - 150)}px`;
  tip.style.top = `${hit.y + 14}px`;
  tip.hidden = false;
}

function clickMap(event) {
  const hit = nearestPoint(event);
  if (hit) openReference(map.data.index[hit.point.i]);
}

export function initMap() {
  const canvas = $("map");
  canvas.addEventListener("mousemove", hoverMap);
  canvas.addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  canvas.addEventListener("click", clickMap);
  window.addEventListener("resize", drawMap);
}
