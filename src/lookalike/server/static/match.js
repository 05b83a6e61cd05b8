// The match view: each reference paired with at most one image of a second set (lookalike serve MODEL --match SET).
"use strict";

import { $, api, fitNames, nameSpan, openNeighbours, showError, thumbImage, tile, updateRoute } from "./common.js";

const PAGE = 50;
const matching = { offset: 0, threshold: null, show: "pairs" };

// An image of the other set: its own thumbnail address, and no neighbours to open (it is not a reference).
function otherTile(item) {
  const box = document.createElement("div");
  box.className = "tile other";
  box.dataset.other = item.index;
  box.title = item.path || String(item.label);
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.append(nameSpan("name", item));
  box.append(thumbImage(item, "/api/match/other"), caption);
  return box;
}

function row(entry) {
  const line = document.createElement("div");
  line.className = "match-row";
  if (entry.a) line.append(tile(entry.a, openNeighbours));
  const middle = document.createElement("span");
  middle.className = "match-distance";
  middle.textContent = entry.distance === null ? "no pair" : `↔ ${entry.distance.toFixed(3)}`;
  line.append(middle);
  if (entry.b) line.append(otherTile(entry.b));
  return line;
}

async function load() {
  const threshold = matching.threshold === null ? "" : `&threshold=${matching.threshold}`;
  try {
    const page = await api(`/match?show=${matching.show}&offset=${matching.offset}&limit=${PAGE}${threshold}`);
    matching.threshold = page.threshold;
    $("match-threshold").value = Number(page.threshold.toFixed(4));
    $("match-threshold").max = page.max_threshold;
    $("match-info").textContent = `${page.pairs} pairs at ${page.threshold.toFixed(3)}; ` +
      `${page.unmatched_a} references and ${page.unmatched_b} images of the other set without a pair`;
    $("match-rows").replaceChildren(...page.items.map(row));
    fitNames($("match-rows"));
    $("match-prev").disabled = page.offset === 0;
    $("match-next").disabled = page.offset + page.items.length >= page.total;
    updateRoute({ view: "match", show: matching.show, mt: page.threshold });
  } catch (error) { showError(`Could not list the pairs (${error.message})`); }
}

export function showMatch(params) {
  const show = params.get("show");
  if (["pairs", "unmatched-a", "unmatched-b"].includes(show)) { matching.show = show; $("match-show").value = show; }
  const threshold = Number.parseFloat(params.get("mt"));
  if (Number.isFinite(threshold)) matching.threshold = threshold;
  load();
}

export function initMatch() {
  $("match-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = Number.parseFloat($("match-threshold").value);
    matching.threshold = Number.isFinite(value) && value >= 0 ? value : null;
    matching.offset = 0;
    load();
  });
  $("match-show").addEventListener("change", () => { matching.show = $("match-show").value; matching.offset = 0; load(); });
  $("match-prev").addEventListener("click", () => { matching.offset = Math.max(0, matching.offset - PAGE); load(); });
  $("match-next").addEventListener("click", () => { matching.offset += PAGE; load(); });
}
