// The duplicates view: near-duplicate groups at a threshold, filtered by tier.
"use strict";

import { $, api, fill, openNeighbours, showError } from "./common.js";

const DUP_PAGE = 20;
const dups = { offset: 0, threshold: null };

async function loadDuplicates() {
  const container = $("duplicates");
  container.dataset.loaded = "1";
  const threshold = dups.threshold === null ? "" : `&threshold=${dups.threshold}`;
  const tiers = $("dup-tiers").value.split(",").filter(Boolean).map((t) => `&tiers=${t}`).join("");
  try {
    const result = await api(`/duplicates?offset=${dups.offset}&limit=${DUP_PAGE}${threshold}${tiers}`);
    dups.threshold = result.threshold;
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

export function showDuplicates() {
  if (!$("duplicates").dataset.loaded) loadDuplicates();
}

export function initDuplicates() {
  $("dup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = parseFloat($("dup-threshold").value);
    dups.threshold = Number.isFinite(value) && value >= 0 ? value : null;
    dups.offset = 0;
    loadDuplicates();
  });
  $("dup-prev").addEventListener("click", () => { dups.offset = Math.max(0, dups.offset - DUP_PAGE); loadDuplicates(); });
  $("dup-next").addEventListener("click", () => { dups.offset += DUP_PAGE; loadDuplicates(); });
}
