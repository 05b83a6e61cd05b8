// lookalike explorer: plain JS modules over the REST API (no framework, no CDN, works offline).
"use strict";

import {
  $, api, closeNeighbours, fill, fitNames, openNeighbours, openReference, route, showError, state, updateRoute,
} from "./common.js";
import { initAudit, showAudit } from "./audit.js";
import { initDuplicates, showDuplicates } from "./duplicates.js";
import { initMap, showMap } from "./map.js";
import { initMatch, showMatch } from "./match.js";

const PAGE_SIZE = 60;
const browse = { offset: 0, total: 0 };
const VIEWS = {
  browse: () => {}, search: () => {}, duplicates: showDuplicates, audit: showAudit, map: showMap,
  match: () => showMatch(route()),
};

function showView(name) {
  if (!(name in VIEWS)) name = "browse";
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.view === name));
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  showError("");
  updateRoute({ view: name === "browse" ? null : name });
  VIEWS[name]();
  fitNames($(`view-${name}`)); // names listed while the view was hidden had no width to fit
}

async function loadPage(offset) {
  try {
    const page = await api(`/references?offset=${offset}&limit=${PAGE_SIZE}`);
    browse.offset = page.offset;
    browse.total = page.total;
    fill($("grid"), page.items, openNeighbours);
    const last = Math.min(page.offset + page.items.length, page.total);
    $("page-info").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no references";
    $("prev").disabled = page.offset === 0;
    $("next").disabled = last >= page.total;
  } catch (error) { showError(`Could not list the references (${error.message})`); }
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

async function loadSummary() {
  const summary = await api("/summary");
  state.summary = summary;
  $("summary").textContent = `${summary.num_references} references · ${summary.model} · ${summary.metric}`;
  document.querySelector('#tabs button[data-view="match"]').hidden = !summary.has_match;
  if (!summary.can_query_images) $("dropzone").querySelector("span").textContent = "This model holds precomputed embeddings: it cannot search by photo.";
}

async function start() {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  $("prev").addEventListener("click", () => loadPage(Math.max(0, browse.offset - PAGE_SIZE)));
  $("next").addEventListener("click", () => loadPage(browse.offset + PAGE_SIZE));
  $("close-panel").addEventListener("click", closeNeighbours);
  $("k").addEventListener("change", () => { if (state.current && !$("neighbours-panel").hidden) openNeighbours(state.current); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("neighbours-panel").hidden) closeNeighbours(); });

  $("upload-input").addEventListener("change", (e) => upload(e.target.files[0]));
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); upload(e.dataTransfer.files[0]); });

  initDuplicates();
  initAudit();
  initMap();
  initMatch();
  // An apply or undo in the duplicates view moved files out of the model or back: positions changed.
  document.addEventListener("lookalike:references-changed", () => {
    closeNeighbours();
    loadSummary().then(() => loadPage(browse.offset), (error) => showError(`Cannot reach the API (${error.message})`));
  });

  try {
    await loadSummary();
  } catch (error) { showError(`Cannot reach the API (${error.message})`); return; }
  loadPage(0);
  // A shared URL opens the same view, and the same reference's neighbours.
  const params = route();
  showView(params.get("view") || "browse");
  if (params.get("ref") !== null) openReference(Number(params.get("ref")));
}

start();
