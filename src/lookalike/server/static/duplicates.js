// The duplicates view: a review of near-duplicate groups, one card per group, done with the keyboard alone.
// One group is current (its card focused) and one member within it; each key records a decision on the server
// (POST /api/decisions) and the card shows it. Keys are handled one at a time, in order, each waiting for the
// requests of the one before: keys typed ahead of a slow answer act on the group they were meant for.
"use strict";

import {
  $, api, baseName, fitNames, nameSpan, openNeighbours, postJSON, route, showError, thumbImage, updateRoute,
} from "./common.js";

const DUP_PAGE = 20;
const review = {
  offset: 0, // position of the page's first group among all the groups
  total: 0,
  groups: [], // the page's groups as the API gave them; each member also holds its tile (member.tile)
  group: 0, // the current group, counted within the page
  member: 0, // the current member of the current group
  threshold: null, // null: the server's default for this model
  status: null, // the ReviewStatus of the last answer
  undo: null, // the manifest of the last apply on this model not undone yet (of the status: it outlives a reload)
};

// ------------------------------------------------------------------ one key at a time
let queue = Promise.resolve();
let waiting = 0;

function setBusy() {
  // Read by the browser tests (and by anyone scripting the page): "false" once every key has been acted on.
  $("view-duplicates").dataset.busy = String(waiting > 0);
}

function enqueue(task) {
  waiting += 1;
  setBusy();
  queue = queue
    .then(task)
    .catch((error) => showError(error.message))
    .finally(() => { waiting -= 1; setBusy(); });
  return queue;
}

// A key's or a button's action, after the actions before it; its hint replaces the last one.
function run(action) {
  return enqueue(() => { hint(""); return action(); });
}

function hint(text) {
  $("review-hint").textContent = text;
}

// ------------------------------------------------------------------ loading a page of groups
function tiersQuery() {
  return $("dup-tiers").value.split(",").filter(Boolean).map((t) => `&tiers=${encodeURIComponent(t)}`).join("");
}

// Loads the page of groups starting at ``offset`` and makes current the group holding the reference ``follow``
// (a decision can move a group within the page), else the group at page position ``group`` (-1: the last).
// What the threshold means on this collection (copies of its own photos found, false links expected): measured by
// the server on first request (a few seconds), so it is shown when it arrives, after the groups.
let explained = null;
function explainThreshold(threshold) {
  if (explained === threshold) return;
  explained = threshold;
  const box = $("dup-calibration");
  api(`/calibration?threshold=${threshold}`)
    .then((calibration) => {
      if (explained !== threshold) return;
      box.textContent = `Calibrated on this collection: ${calibration.summary}.`;
      box.hidden = false;
    })
    .catch(() => { box.hidden = true; });  // a model without image files cannot be calibrated: say nothing
}

async function load(offset, { group = 0, follow = null, member = null } = {}) {
  $("duplicates").dataset.loaded = "1";
  const threshold = review.threshold === null ? "" : `&threshold=${review.threshold}`;
  let result;
  try {
    result = await api(`/duplicates?offset=${offset}&limit=${DUP_PAGE}${threshold}${tiersQuery()}`);
    if (result.offset > 0 && result.offset >= result.total) {
      // Groups went away (an apply, a pair said not to be duplicates): show the last page there still is.
      const last = Math.max(0, Math.floor((result.total - 1) / DUP_PAGE) * DUP_PAGE);
      result = await api(`/duplicates?offset=${last}&limit=${DUP_PAGE}${threshold}${tiersQuery()}`);
      group = -1;
    }
  } catch (error) { throw new Error(`Could not group duplicates (${error.message})`); }
  review.threshold = result.threshold;
  review.offset = result.offset;
  review.total = result.total;
  review.groups = result.groups;
  review.status = result.review;
  $("dup-threshold").value = Number(result.threshold.toFixed(4));
  const near = result.nearest;
  const filter = $("dup-tiers");
  filter.classList.toggle("filtered", filter.value !== "");
  $("dup-info").textContent = `${result.total} groups at ${result.threshold.toFixed(3)} ` +
    `(nearest-neighbour distances: 1% ${near.p1.toFixed(2)}, 5% ${near.p5.toFixed(2)}, median ${near.p50.toFixed(2)})` +
    ` · showing ${filter.selectedOptions[0].textContent}`;
  explainThreshold(result.threshold);
  render();
  let at = group < 0 ? review.groups.length - 1 : Math.min(group, review.groups.length - 1);
  if (follow !== null) {
    const found = review.groups.findIndex((g) => g.members.some((m) => m.index === follow));
    if (found >= 0) at = found;
  }
  const members = review.groups[at] ? review.groups[at].members : [];
  const where = member === null ? -1 : members.findIndex((m) => m.index === member);
  select(at, Math.max(0, where));
  $("dup-prev").disabled = result.offset === 0;
  $("dup-next").disabled = result.offset + result.groups.length >= result.total;
}

// ------------------------------------------------------------------ the cards
function fileSize(bytes) {
  if (bytes === null || bytes === undefined) return null;
  if (bytes < 1024) return `${bytes}\u00a0B`; // a size and its unit on one line
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)}\u00a0KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)}\u00a0MB`;
}

function fileDate(mtime) {
  if (mtime === null || mtime === undefined) return null;
  const d = new Date(mtime * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

function name(item) {
  return item.path ? baseName(item.path) : String(item.label);
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function memberTile(item, groupAt, memberAt) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile member";
  button.dataset.index = item.index;
  button.dataset.tier = item.tier;
  button.dataset.action = item.action;
  button.title = `${item.path || String(item.label)}\n${item.reason}`;
  if (item.keeper) button.classList.add("keeper");
  const suggestion = item.action === "discard" ? "copy" : item.tier === "similar" ? "look-alike" : "copy of another";
  const role = item.keeper ? `keeper · ${item.tier}` : `${suggestion} · ${item.tier} · ${item.distance.toFixed(3)}`;
  // On a narrow tile the facts wrap between words (a date before its time), never inside one, and a "·" stays with
  // the fact it introduces.
  const words = [item.width && item.height ? `${item.width}×${item.height}` : null, fileSize(item.bytes), fileDate(item.mtime)]
    .filter(Boolean)
    .flatMap((fact, at) => fact.split(" ").map((word, w) => (at && !w ? `· ${word}` : word)));
  const facts = span("facts", "");
  facts.append(...words.flatMap((word, w) => [...(w ? [" "] : []), span("fact", word)]));
  button.append(
    thumbImage(item), span("badge", ""), span("distance", role), nameSpan("name", item), facts,
  );
  // A click makes the image current (the buttons below the cards then act on it); a second click opens its neighbours.
  button.addEventListener("click", () => enqueue(() => {
    if (review.groups[groupAt] === currentGroup() && review.member === memberAt) openNeighbours(item);
    else select(groupAt, memberAt);
  }));
  item.tile = button;
  paintDecision(item);
  return button;
}

function paintDecision(item) {
  const decision = item.decision || "none";
  item.tile.dataset.decision = decision;
  item.tile.querySelector(".badge").textContent = { keep: "keep", discard: "discard", none: "undecided" }[decision];
}

function render() {
  const cards = review.groups.map((group, at) => {
    const card = document.createElement("article");
    card.className = "group";
    card.tabIndex = -1; // focusable by the script, not a Tab stop: the keys move between groups
    card.dataset.group = review.offset + at + 1;
    const title = document.createElement("h3");
    const farthest = Math.max(...group.members.map((m) => m.distance));
    title.textContent = `Group ${review.offset + at + 1} of ${review.total}: ${group.size} images, ` +
      `farthest ${farthest.toFixed(3)} from the keeper`;
    const why = span("why", `keeper: ${group.keeper_reason}`);
    const grid = document.createElement("div");
    grid.className = "grid";
    grid.append(...group.members.map((item, m) => memberTile(item, at, m)));
    card.append(title, why, grid);
    group.card = card;
    return card;
  });
  if (!cards.length) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "No near-duplicates at this threshold: raise it to group more loosely.";
    cards.push(empty);
  }
  $("duplicates").replaceChildren(...cards);
  fitNames($("duplicates"));
}

// ------------------------------------------------------------------ the current group and member
function currentGroup() {
  return review.groups[review.group] || null;
}

function currentMember() {
  const group = currentGroup();
  return group ? group.members[review.member] : null;
}

function select(groupAt, memberAt) {
  for (const card of $("duplicates").querySelectorAll(".group.current, .tile.current")) {
    card.classList.remove("current");
    card.removeAttribute("aria-current");
  }
  review.group = Math.max(0, groupAt);
  const group = currentGroup();
  showProgress();
  if (!group) return;
  review.member = Math.min(Math.max(0, memberAt), group.members.length - 1);
  group.card.classList.add("current");
  group.card.setAttribute("aria-current", "true");
  const tile = group.members[review.member].tile;
  tile.classList.add("current");
  tile.setAttribute("aria-current", "true");
  // Focus follows the review unless the person is typing in the form (a page load they asked for from there).
  if (!document.activeElement || !document.activeElement.closest("#dup-form")) group.card.focus({ preventScroll: true });
  if (review.offset === 0 && review.group === 0 && fitsBelowTop(tile)) {
    window.scrollTo({ top: 0 }); // the first group: with the threshold, the tiers and what they mean above it
  } else {
    group.card.scrollIntoView({ block: "nearest" });
    tile.scrollIntoView({ block: "nearest" });
  }
  updateRoute({
    view: "duplicates",
    group: review.offset + review.group + 1, // as the card numbers it: 1 is the first group
    threshold: review.threshold,
    tiers: $("dup-tiers").value || null,
  });
}

// Whether ``element`` is in view, clear of the review bar, once the page is scrolled to its top.
function fitsBelowTop(element) {
  const bar = $("review-bar").getBoundingClientRect();
  return element.getBoundingClientRect().bottom + window.scrollY <= window.innerHeight - bar.height;
}

function showProgress() {
  const status = review.status;
  const where = review.total ? `Group ${review.offset + review.group + 1} of ${review.total}` : "No groups";
  $("review-progress").textContent = status
    ? `${where} · ${status.decisions} decisions · ${status.pending_discards} discards waiting`
    : where;
  if (!status) return;
  const apply = $("apply-button");
  apply.disabled = !status.can_apply || status.pending_discards === 0;
  $("apply-where").textContent = status.can_apply
    ? `moves ${status.pending_discards} files to ${status.move_to}`
    : `cannot move files: ${status.apply_refusal}`;
  $("review-saved").hidden = status.saved;
  review.undo = status.manifests.length ? status.manifests[status.manifests.length - 1] : null;
  $("undo-button").hidden = !review.undo;
}

async function nextGroup() {
  if (review.group + 1 < review.groups.length) return select(review.group + 1, 0);
  if (review.offset + review.groups.length < review.total) return load(review.offset + DUP_PAGE, { group: 0 });
  hint("That was the last group. Shift+A applies the discards.");
}

async function previousGroup() {
  if (review.group > 0) return select(review.group - 1, 0);
  if (review.offset > 0) return load(Math.max(0, review.offset - DUP_PAGE), { group: -1 });
  hint("This is the first group.");
}

function moveMember(step) {
  const group = currentGroup();
  if (group) select(review.group, review.member + step);
}

// ------------------------------------------------------------------ decisions
async function decide(action, item, other = null) {
  // With the paths the page knows: the server refuses the decision if a position holds another file by now.
  const body = { action, index: item.index, path: item.path };
  if (other) Object.assign(body, { other: other.index, other_path: other.path });
  try {
    review.status = await postJSON("/decisions", body);
  } catch (error) {
    throw new Error(`Could not record "${action}" on ${item.path || item.label} (${error.message})`);
  }
  if (action !== "not-duplicate") {
    item.decision = action === "clear" ? null : action;
    paintDecision(item);
  }
  showProgress();
}

// Reloads the current page after a decision that can regroup (a keeper chosen, a pair split), staying on the
// group that holds ``follow``, else at the same place in the list (where the next group now is).
function reloadFollowing(follow, member = null) {
  return load(review.offset, { group: review.group, follow, member });
}

// a: the group as suggested: its keeper kept, each copy of it discarded; look-alikes and copies of other members
// are left alone (a person may still discard one with d). Then the next group.
async function accept() {
  const group = currentGroup();
  if (!group) return;
  const [keeper, ...others] = group.members;
  const copies = others.filter((item) => item.action === "discard");
  if (keeper.decision !== "keep") await decide("keep", keeper);
  for (const item of copies) await decide("discard", item, keeper);
  const left = others.length - copies.length;
  hint(`Group ${review.offset + review.group + 1}: kept 1, discarded ${copies.length}` +
    (left ? `, left ${left} alone (look-alikes or copies of another member).` : "."));
  await nextGroup();
}

// d: the current member is a duplicate of the keeper.
async function discard() {
  const group = currentGroup();
  const item = currentMember();
  if (!item) return;
  if (item === group.members[0]) {
    hint("The keeper cannot be discarded as its own duplicate: make another image the keeper first (s).");
    return;
  }
  await decide("discard", item, group.members[0]);
}

// x or n: the current member is not a duplicate of the keeper; it leaves the group (unless linked to another
// member), which can split or dissolve the group, so the page is reloaded.
async function notDuplicate() {
  const group = currentGroup();
  const item = currentMember();
  if (!item) return;
  const keeper = group.members[0];
  if (item === keeper) {
    hint("Choose the image that is not a duplicate of the keeper (← →), then press x.");
    return;
  }
  // A keep or discard decision on it would still tie it to the group: "not a duplicate" replaces it.
  if (item.decision) await decide("clear", item);
  await decide("not-duplicate", item, keeper);
  await reloadFollowing(keeper.index);
  const still = currentGroup() && currentGroup().members.some((m) => m.index === item.index);
  hint(still
    ? `${name(item)} is not a duplicate of the keeper, but stays in the group: it is close to another image of it.`
    : `${name(item)} is not a duplicate of ${name(keeper)}: they are apart now.`);
}

// s: keep the current member: it becomes the keeper, and discards made for the old keeper now refer to it.
async function keepThis() {
  const group = currentGroup();
  const item = currentMember();
  if (!item) return;
  const keeper = group.members[0];
  if (item === keeper) {
    if (item.decision !== "keep") await decide("keep", item);
    return;
  }
  await decide("keep", item);
  // Two marked keepers: the keeper policy would choose between them again. The old one loses its mark.
  if (keeper.decision === "keep") await decide("clear", keeper);
  for (const other of group.members.slice(1)) {
    if (other !== item && other.decision === "discard") await decide("discard", other, item);
  }
  hint(`${name(item)} is now the keeper.`);
  await reloadFollowing(item.index, item.index);
}

// u: forget the current member's keep or discard decision.
async function clear() {
  const item = currentMember();
  if (!item) return;
  if (!item.decision) {
    hint("This image has no decision to clear.");
    return;
  }
  const was = item.decision;
  await decide("clear", item);
  if (was === "keep") await reloadFollowing(item.index, item.index); // the keeper policy chooses again
}

function open() {
  const item = currentMember();
  if (item) openNeighbours(item);
}

// ------------------------------------------------------------------ apply and undo
function confirmInDialog(text) {
  const dialog = $("apply-dialog");
  $("apply-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("apply-confirm").focus(); // Enter confirms, Escape cancels (the dialog's own cancel)
  });
}

function showMoves(result) {
  const skipped = result.skipped.length
    ? ` Skipped: ${result.skipped.slice(0, 3).map((s) => `${s.path} (${s.reason})`).join("; ")}` +
      (result.skipped.length > 3 ? ` and ${result.skipped.length - 3} more.` : ".")
    : "";
  $("review-summary").textContent = `${result.summary}.${skipped}`;
  $("review-result").hidden = false;
}

// Files moved out of the model or back into it: every position may now hold another reference. The other views
// listen ("lookalike:references-changed") to reload what they list; the groups are reloaded by the caller.
function referencesChanged() {
  document.dispatchEvent(new CustomEvent("lookalike:references-changed"));
}

async function apply() {
  const status = review.status;
  if (!status) return;
  if (!status.can_apply) {
    hint(`Discarded files cannot be moved: ${status.apply_refusal}`);
    return;
  }
  if (!status.pending_discards) {
    hint("No discards are waiting: discard some duplicates first (a or d).");
    return;
  }
  const count = status.pending_discards;
  const confirmed = await confirmInDialog(
    `Move ${count} discarded ${count === 1 ? "file" : "files"} out of the photo folders to ${status.move_to}? ` +
    "Each keeps its place under that folder; nothing is deleted, and Undo puts them back.",
  );
  if (!confirmed) {
    hint("Nothing was moved.");
    return;
  }
  try {
    showMoves(await postJSON("/apply", { confirm: true }));
  } catch (error) {
    throw new Error(`Could not move the discarded files (${error.message})`);
  } finally {
    // Even an apply stopped part-way (a full disk) moved files, saved and undoable: the groups and the bar show it.
    referencesChanged();
    await load(0);
  }
}

async function undo() {
  if (!review.undo) {
    hint("There is no apply on this model to undo.");
    return;
  }
  let result;
  try {
    result = await postJSON("/undo", { manifest: review.undo });
  } catch (error) { throw new Error(`Could not undo the moves (${error.message})`); }
  showMoves(result);
  referencesChanged();
  await load(0);
}

// ------------------------------------------------------------------ keys
const KEYS = {
  j: nextGroup, ArrowDown: nextGroup, k: previousGroup, ArrowUp: previousGroup,
  ArrowRight: () => moveMember(1), ArrowLeft: () => moveMember(-1),
  a: accept, d: discard, x: notDuplicate, n: notDuplicate, s: keepThis, u: clear,
  Enter: open, o: open, A: apply, U: undo,
};

function onKey(event) {
  if ($("view-duplicates").hidden || $("apply-dialog").open) return;
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target instanceof Element ? event.target : document.body;
  // Typing in the form or the neighbours panel is not a review key; nor is Enter or Space on a button (it clicks).
  if (target.closest("input, select, textarea, [contenteditable], #neighbours-panel")) return;
  if ((event.key === "Enter" || event.key === " ") && target.closest("button, a")) return;
  if (event.key === "?" || (event.key === "Escape" && !$("review-help").hidden)) {
    event.preventDefault();
    toggleHelp();
    return;
  }
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  run(action);
}

// The help floats over the page where the person is (not at its top, out of view from a group far down).
function toggleHelp() {
  $("review-help").hidden = !$("review-help").hidden;
}

// ------------------------------------------------------------------ the view
export function showDuplicates() {
  if ($("duplicates").dataset.loaded) return;
  // A shared URL names the group (as numbered on its card), the threshold and the tiers shown.
  const params = route();
  const threshold = parseFloat(params.get("threshold"));
  if (Number.isFinite(threshold) && threshold >= 0) review.threshold = threshold;
  const tiers = params.get("tiers");
  const filter = $("dup-tiers");
  if (tiers && ![...filter.options].some((o) => o.value === tiers)) filter.add(new Option(tiers.replaceAll(",", ", "), tiers));
  if (tiers) filter.value = tiers;
  const number = parseInt(params.get("group"), 10);
  const at = Number.isFinite(number) && number > 0 ? number - 1 : 0;
  const offset = Math.floor(at / DUP_PAGE) * DUP_PAGE;
  enqueue(() => load(offset, { group: at - offset }));
}

export function initDuplicates() {
  setBusy();
  $("dup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = parseFloat($("dup-threshold").value);
    review.threshold = Number.isFinite(value) && value >= 0 ? value : null;
    enqueue(() => load(0));
  });
  $("dup-tiers").addEventListener("change", () => enqueue(() => load(0)));
  $("dup-prev").addEventListener("click", () => enqueue(() => load(Math.max(0, review.offset - DUP_PAGE))));
  $("dup-next").addEventListener("click", () => enqueue(() => load(review.offset + DUP_PAGE)));
  $("apply-button").addEventListener("click", () => run(apply));
  $("undo-button").addEventListener("click", () => run(undo));
  $("apply-confirm").addEventListener("click", () => $("apply-dialog").close("confirm"));
  $("apply-cancel").addEventListener("click", () => $("apply-dialog").close("cancel"));
  for (const button of document.querySelectorAll("#review-bar [data-key]")) {
    button.addEventListener("click", () => run(KEYS[button.dataset.key]));
  }
  $("review-help-toggle").addEventListener("click", toggleHelp);
  $("review-help-close").addEventListener("click", toggleHelp);
  document.addEventListener("keydown", onKey);
}
