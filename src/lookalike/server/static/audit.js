// The audit view: the findings of model.audit() by kind, surest first, each with its photos and the reason; one key
// records a verdict on the server (POST /api/audit/decisions), saved with the model like duplicate decisions.
// Keys act one after the other, each after the answer to the one before (data-busy says when all are done).
"use strict";

import { $, api, downloadWithToken, openNeighbours, postJSON, showError, thumbImage } from "./common.js";

const PAGE = 50;
const view = { kind: "", offset: 0, total: 0, findings: [], current: 0 };

let pending = Promise.resolve();
let queued = 0;
function later(task) {
  queued += 1;
  $("view-audit").dataset.busy = "true";
  pending = pending.then(task).catch((error) => showError(error.message)).finally(() => {
    queued -= 1;
    $("view-audit").dataset.busy = String(queued > 0);
  });
  return pending;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function renderKinds(kinds) {
  const rows = Object.entries(kinds).filter(([, k]) => k.count > 0).map(([name, k]) => {
    const tr = document.createElement("tr");
    const link = document.createElement("button");
    link.type = "button";
    link.className = "link";
    link.textContent = name;
    link.addEventListener("click", () => { $("audit-kind").value = name; later(() => load(0, name)); });
    const first = document.createElement("td");
    first.appendChild(link);
    const expected = k.expected_precision === null ? "not measured" : k.expected_precision.toFixed(2);
    tr.append(first, cell(String(k.count)), cell(expected), cell(k.meaning));
    return tr;
  });
  $("audit-kinds").replaceChildren(...rows);
  const select = $("audit-kind");
  const chosen = select.value;
  select.replaceChildren(new Option("every kind", ""), ...Object.keys(kinds).map((name) => new Option(`${name} (${kinds[name].count})`, name)));
  select.value = chosen;
}

function card(finding, at) {
  const box = document.createElement("div");
  box.className = "finding";
  box.dataset.kind = finding.kind;
  box.dataset.path = finding.paths[0] || "";
  box.dataset.decision = finding.decision || "";
  box.tabIndex = -1;
  const photos = document.createElement("div");
  photos.className = "finding-photos";
  for (const item of finding.items.slice(0, 2)) photos.appendChild(thumbImage(item));
  const text = document.createElement("p");
  const suggestion = finding.suggested_label ? ` → ${finding.suggested_label}` : "";
  const where = [finding.split, finding.label].filter(Boolean).join(" / ");
  text.textContent = `${finding.kind} · ${finding.score.toFixed(2)} · ${finding.reason}${suggestion}`;
  const meta = document.createElement("p");
  meta.className = "muted";
  meta.textContent = `${where ? `${where} · ` : ""}${finding.paths.map((p) => p.split(/[\\/]/).pop()).join(" | ")}` +
    (finding.decision ? ` · decided: ${finding.decision}` : "");
  box.append(photos, text, meta);
  box.addEventListener("click", () => select(at));
  return box;
}

function select(at) {
  const cards = [...$("audit-findings").children];
  if (!cards.length) return;
  view.current = Math.max(0, Math.min(at, cards.length - 1));
  cards.forEach((c, i) => c.classList.toggle("current", i === view.current));
  cards[view.current].scrollIntoView({ block: "nearest" });
}

async function load(offset, kind = view.kind, keep = 0) {
  view.kind = kind;
  const filter = kind ? `&kind=${encodeURIComponent(kind)}` : "";
  $("audit-info").textContent = "auditing… (the first time, a few seconds: problems are planted in a sample)";
  const page = await api(`/audit?offset=${offset}&limit=${PAGE}${filter}`);
  Object.assign(view, { offset: page.offset, total: page.total, findings: page.findings });
  renderKinds(page.kinds);
  $("audit-findings").replaceChildren(...page.findings.map(card));
  $("audit-findings").dataset.loaded = "1";
  const last = Math.min(page.offset + page.findings.length, page.total);
  $("audit-info").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total} findings` : "no findings";
  $("audit-saved").hidden = page.saved;
  $("audit-prev").disabled = page.offset === 0;
  $("audit-next").disabled = last >= page.total;
  select(keep);
}

async function decide(action) {
  const finding = view.findings[view.current];
  if (!finding || !finding.items.length) return;
  const item = finding.items[0];
  if (action === "relabel" && !finding.suggested_label) {
    $("audit-hint").textContent = "no label to suggest: only label errors can be relabelled with a key";
    return;
  }
  const body = { index: item.index, path: item.path, action };
  if (action === "not-an-issue") body.finding = finding.kind;
  if (action === "relabel") body.label = finding.suggested_label;
  await postJSON("/audit/decisions", body);
  $("audit-hint").textContent = `${action} recorded for ${item.path ? item.path.split(/[\\/]/).pop() : item.label}`;
  // A finding marked not an issue leaves the list: the next one takes its place; others stay, with the verdict.
  await load(view.offset, view.kind, action === "not-an-issue" ? view.current : view.current + 1);
}

const KEYS = {
  j: () => select(view.current + 1), ArrowDown: () => select(view.current + 1),
  k: () => select(view.current - 1), ArrowUp: () => select(view.current - 1),
  n: () => decide("not-an-issue"), r: () => decide("relabel"), x: () => decide("exclude"), u: () => decide("forget"),
  Enter: () => { const f = view.findings[view.current]; if (f && f.items.length) openNeighbours(f.items[0]); },
};

function onKey(event) {
  if ($("view-audit").hidden || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
  const target = event.target instanceof Element ? event.target : document.body;
  if (target.closest("input, select, textarea, #neighbours-panel")) return;
  if ((event.key === "Enter" || event.key === " ") && target.closest("button, a")) return;
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  later(async () => { $("audit-hint").textContent = ""; await action(); });
}

export function showAudit() {
  if (!$("audit-findings").dataset.loaded) later(() => load(0));
}

export function initAudit() {
  $("view-audit").dataset.busy = "false";
  downloadWithToken($("audit-export"));
  $("audit-kind").addEventListener("change", () => later(() => load(0, $("audit-kind").value)));
  $("audit-prev").addEventListener("click", () => later(() => load(Math.max(0, view.offset - PAGE))));
  $("audit-next").addEventListener("click", () => later(() => load(view.offset + PAGE)));
  for (const button of document.querySelectorAll("#view-audit [data-key]")) {
    button.addEventListener("click", () => later(() => KEYS[button.dataset.key]()));
  }
  document.addEventListener("keydown", onKey);
}
