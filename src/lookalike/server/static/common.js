// Shared by the explorer's views: the API client, thumbnails, tiles, the neighbours panel and the URL of a view.
"use strict";

// A bearer token arrives in the URL fragment (never sent to the server by the browser); keep it for this tab only.
const tokenMatch = location.hash.match(/token=([^&]+)/);
if (tokenMatch) {
  sessionStorage.setItem("lookalike-token", decodeURIComponent(tokenMatch[1]));
  const rest = new URLSearchParams(location.hash.slice(1));
  rest.delete("token");
  history.replaceState(null, "", location.pathname + location.search + (rest.toString() ? `#${rest}` : ""));
}
const token = sessionStorage.getItem("lookalike-token");
const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};

export const $ = (id) => document.getElementById(id);
export const state = { summary: null, current: null };

export function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

export async function api(path, options = {}) {
  const response = await fetch(`/api${path}`, { ...options, headers: { ...authHeaders, ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

export function postJSON(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// ------------------------------------------------------------------ the URL of what is on screen, to share
// The fragment holds the view and its place (#view=map&x=..; #view=duplicates&group=3; #ref=12): reading
// it back opens the same view. It is rewritten in place, so the back button is not flooded with steps.
export function route() {
  return new URLSearchParams(location.hash.slice(1));
}

export function setRoute(values) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  history.replaceState(null, "", `${location.pathname}${location.search}#${params}`);
}

export function updateRoute(values) {
  const params = Object.fromEntries(route());
  setRoute({ ...params, ...values });
}

// ------------------------------------------------------------------ thumbnails, loaded when they scroll into view
export function loadThumb(img) {
  const src = img.dataset.src;
  if (!src || img.dataset.loaded) return;
  img.dataset.loaded = "1";
  if (!token) { img.src = src; return; }
  fetch(src, { headers: authHeaders })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.statusText))))
    .then((blob) => { img.src = URL.createObjectURL(blob); })
    .catch(() => { img.alt = "(no image)"; });
}

// An image the API serves, decoded for drawing on a canvas (the map), fetched with the bearer token if there is one;
// ``width`` scales it down as it is decoded (its height follows), so many fit in memory.
export async function fetchBitmap(src, width) {
  const response = await fetch(src, { headers: authHeaders });
  if (!response.ok) throw new Error(`${response.status}: ${response.statusText}`);
  return createImageBitmap(await response.blob(), width ? { resizeWidth: width, resizeQuality: "medium" } : {});
}

// A link to a file the API serves: with a bearer token, which a plain link cannot send, the file is fetched with
// it and saved from memory under the link's download name.
export function downloadWithToken(link) {
  link.addEventListener("click", (event) => {
    if (!token) return;
    event.preventDefault();
    fetch(link.href, { headers: authHeaders })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`${r.status}: ${r.statusText}`))))
      .then((blob) => {
        const saved = document.createElement("a");
        saved.href = URL.createObjectURL(blob);
        saved.download = link.getAttribute("download") || "download";
        saved.click();
        setTimeout(() => URL.revokeObjectURL(saved.href), 60000);
      })
      .catch((error) => showError(`${link.textContent}: ${error.message}`));
  });
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { observer.unobserve(entry.target); loadThumb(entry.target); }
    }
  }, { rootMargin: "300px" })
  : null;

// The address names the file's version (of its listing: path, size, modification time): the browser keeps it for
// good, since a position that holds another file after an apply or undo, a file edited, or a server restarted with
// other files, all give other addresses; the server refuses a stale one. Without a version the browser asks each time.
export function thumbnailURL(index, version, base = "/api/references") {
  return `${base}/${index}/thumbnail${version ? `?v=${encodeURIComponent(version)}` : ""}`;
}

export function thumbImage(item, base) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = String(item.label);
  img.decoding = "async";
  img.dataset.src = thumbnailURL(item.index, item.version, base);
  if (observer) observer.observe(img); else loadThumb(img);
  return img;
}

// ------------------------------------------------------------------ file names that fit their box
// A long file name is shortened in the middle ("all_souls_0…_000013.jpg"): what tells the files of a folder apart is
// often at its end (a counter, the extension), which the ellipsis of CSS would cut. The whole path is in the title.
export function baseName(path) {
  return path.split(/[\\/]/).pop();
}

export function nameSpan(className, item) {
  const element = document.createElement("span");
  element.className = `${className} fit`;
  element.textContent = item.path ? baseName(item.path) : String(item.label);
  element.dataset.name = element.textContent;
  if (item.path) element.title = item.path;
  return element;
}

const measure = document.createElement("canvas").getContext("2d");

function middle(name, keep) {
  const head = Math.ceil(keep / 2);
  return `${name.slice(0, head)}…${name.slice(name.length - (keep - head))}`;
}

// Every name under ``root`` shortened to the width of its box: the widths are read first, then the names written, so
// that the page is laid out once; names in hidden views (width 0) are fitted when their view is shown.
export function fitNames(root = document) {
  const boxes = [...root.querySelectorAll(".fit")].map((element) => [element, element.clientWidth]);
  const styles = new Map(); // font and horizontal padding, per kind of name (its class and its parent's)
  for (const [element, width] of boxes) {
    const name = element.dataset.name;
    if (!width || !name) continue;
    const kind = `${element.parentElement.className}/${element.className}`;
    if (!styles.has(kind)) {
      const style = getComputedStyle(element);
      const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
      styles.set(kind, [`${style.fontWeight} ${style.fontSize} ${style.fontFamily}`, padding]);
    }
    const [font, padding] = styles.get(kind);
    measure.font = font;
    const room = width - padding - 1;
    let text = name;
    if (measure.measureText(name).width > room) {
      let low = 2;
      let high = name.length - 1; // the most characters kept that fit, found by halving
      while (low < high) {
        const mid = Math.ceil((low + high) / 2);
        if (measure.measureText(middle(name, mid)).width <= room) low = mid; else high = mid - 1;
      }
      text = middle(name, low);
    }
    if (element.textContent !== text) element.textContent = text;
  }
}

let fitting = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(fitting);
  fitting = requestAnimationFrame(() => fitNames());
});

export function tile(item, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = item.index;
  button.title = item.path || String(item.label);
  button.appendChild(thumbImage(item));
  const caption = document.createElement("span");
  caption.className = "caption";
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
    caption.append(distance);
  }
  caption.append(nameSpan("name", item));
  button.appendChild(caption);
  button.addEventListener("click", () => onClick(item));
  return button;
}

export function fill(container, items, onClick) {
  container.replaceChildren(...items.map((item) => tile(item, onClick)));
  fitNames(container);
}

// ------------------------------------------------------------------ the neighbours panel
export async function openNeighbours(item) {
  state.current = item;
  updateRoute({ ref: item.index });
  const panel = $("neighbours-panel");
  panel.hidden = false;
  const k = $("k").value;
  const card = $("neighbours-query");
  const caption = document.createElement("p");
  caption.className = "muted path";
  caption.textContent = item.path || String(item.label);
  card.replaceChildren(thumbImage(item), caption);
  $("neighbours").replaceChildren();
  try {
    const result = await api(`/references/${item.index}/neighbours?k=${k}`);
    fill($("neighbours"), result.neighbours, openNeighbours);
  } catch (error) { showError(`Could not find neighbours (${error.message})`); }
}

export async function openReference(index) {
  try { openNeighbours(await api(`/references/${index}`)); } catch (error) { showError(error.message); }
}

export function closeNeighbours() {
  $("neighbours-panel").hidden = true;
  updateRoute({ ref: null });
}
