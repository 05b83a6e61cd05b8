"""The explorer as a new user sees it, at 1400x1000 and on a 390x844 phone: a real browser, a real server, real photos.

Nothing runs past its panel, file names keep what tells them apart, the review's controls and help are where the
person is, the review bar follows an apply, an undo is offered after a reload and a restart, and a Match view served
again on the same port with another set shows that set's photos (not the first one's, kept by the browser).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

import lookalike as lk
from lookalike import dedup
from lookalike.server.matching import MatchedSet
from lookalike.server.runner import start_in_thread
from server_fixtures import SAMPLE_PHOTOS, small_folder
from test_review_browser import CURRENT, IDLE, THRESHOLD, press
from test_server_browser import TIMEOUT_MS, browser  # noqa: F401 - the browser fixture

DESKTOP = {"viewport": {"width": 1400, "height": 1000}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
GROUPS = 12
BURST = 14
REVIEW = f"#view=duplicates&threshold={THRESHOLD}"
#: For what saves the model or embeds a photo put back, while the server measures a calibration on the side (the
#: review asks for one) on a machine shared with other tests.
SLOW_MS = 120_000

#: Elements of ``panel`` (a selector) past its left or right edge, or whose content runs past their own box.
SPILLS = """(panel) => {
  const spills = [];
  for (const box of document.querySelectorAll(panel)) {
    const edge = box.getBoundingClientRect();
    if (!edge.width) continue;
    for (const element of box.querySelectorAll('*')) {
      const r = element.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      const what = `${element.tagName}#${element.id}.${element.className} in ${panel}`;
      if (r.right > edge.right + 1 || r.left < edge.left - 1) spills.push(`${what}: ${r.left}..${r.right} past ${edge.left}..${edge.right}`);
      const style = getComputedStyle(element);
      if (style.display !== 'inline' && style.overflowX === 'visible' && element.scrollWidth > element.clientWidth + 1)
        spills.push(`${what}: content ${element.scrollWidth} wide in ${element.clientWidth}`);
    }
  }
  return spills;
}"""
#: Whether the element is on screen and not under anything else (the sticky header, the review bar).
IN_VIEW = """(selector) => {
  const element = document.querySelector(selector);
  const r = element.getBoundingClientRect();
  if (!r.width || r.top < 0 || r.bottom > innerHeight || r.left < 0 || r.right > innerWidth) return false;
  const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return element === top || element.contains(top);
}"""
#: The members of the cards shown: path and decision.
CARDS_OF_COPIES = """() => [...document.querySelectorAll('#duplicates .tile')]
  .map((t) => ({path: t.title.split('\\n')[0], decision: t.dataset.decision}))"""
#: Every file name shown under a selector: (its full name, what is shown, whether that fits its box).
NAMES = """(root) => [...document.querySelectorAll(`${root} .fit`)].filter((e) => e.clientWidth)
  .map((e) => [e.dataset.name, e.textContent, e.scrollWidth <= e.clientWidth])"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> SimpleNamespace:
    """GROUPS photos and an exact copy of each (BURST more copies of the first), named as a camera would (they differ
    at the end only), in a folder deep enough that a path does not fit a phone; the model saved."""
    root = tmp_path_factory.mktemp("layout")
    folder = root / "photos of the trip to Oxford, summer 2019" / "all of them, unsorted"
    folder.mkdir(parents=True)
    for n, photo in enumerate(SAMPLE_PHOTOS[::6][:GROUPS]):
        shutil.copyfile(photo, folder / f"all_souls_oxford_{n:06d}.jpg")
        shutil.copyfile(photo, folder / f"all_souls_oxford_{n + GROUPS:06d}.jpg")
    for n in range(
        2 * GROUPS, 2 * GROUPS + BURST
    ):  # the first group is a burst: taller than the screen below the controls
        shutil.copyfile(SAMPLE_PHOTOS[0], folder / f"all_souls_oxford_{n:06d}.jpg")
    model = root / "photos.lookalike"
    lk.create(str(folder), verbose=False).save(model)
    return SimpleNamespace(folder=folder, model=model, thumbnails=root / "thumbnails")


@pytest.fixture(scope="module")
def served(photos):
    """The explorer on ``photos``, for every test of the layout: what the review measures on first request (a
    calibration, ~40 s of work on 2 cores) is measured once."""
    with start_in_thread(lk.load_model(photos.model), thumbnail_dir=photos.thumbnails) as running:
        yield running


@pytest.fixture
def open_tab(browser):  # noqa: F811 - the fixture imported above
    """A function opening a URL in a new tab (and context, with ``options``) that fails the test on JavaScript errors."""
    contexts, errors = [], []

    def open_url(url: str, context=None, **options):
        if context is None:
            context = browser.new_context(**options)
            contexts.append(context)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(url)
        return tab

    yield open_url
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def open_review(tab, url: str) -> None:
    """Load the review at ``url`` in ``tab`` (again, if it is open), until its groups are shown (or that none are)."""
    tab.goto(url)
    tab.reload()  # a fragment alone does not load the page again
    tab.wait_for_function(
        f"() => document.getElementById('review-progress').textContent && ({IDLE})()", timeout=SLOW_MS
    )


def no_spills(tab, *panels: str) -> None:
    for panel in panels:
        assert tab.evaluate(SPILLS, panel) == [], panel
    assert tab.evaluate("() => document.documentElement.scrollWidth <= innerWidth")


def names_tell_files_apart(tab, container: str) -> list[str]:
    """Every name shown in ``container`` fits its box, keeps the start and the end of the file's name, and tells its
    file apart from the others; the names shown."""
    tab.wait_for_function(f"() => document.querySelector('{container} .fit').clientWidth > 0")
    names = tab.evaluate(NAMES, container)
    files: dict[str, set[str]] = {}
    for full, text, fits in names:
        assert fits, (full, text)
        files.setdefault(text, set()).add(full)
        if text != full:
            head, tail = text.split("…")
            assert full.startswith(head) and full.endswith(tail) and len(tail) >= len("13.jpg"), (full, text)
    assert len(names) >= 2 and all(len(full) == 1 for full in files.values()), files
    return [text for _, text, _ in names]


def test_the_bar_follows_an_apply_and_undo_works_after_a_reload_and_a_restart(open_tab, tmp_path):
    folder = small_folder(tmp_path)
    model, move_to = tmp_path / "small.lookalike", tmp_path / "discarded"
    lk.create(str(folder), verbose=False).save(model)
    options = {"model_path": model, "move_to": move_to, "thumbnail_dir": tmp_path / "thumbnails"}
    url = "#view=duplicates&threshold=0.01"  # the exact copies only

    def apply(tab) -> Path:
        """Accept the group of copies and apply: the file discarded, now moved."""
        press(tab, "a")
        discarded = Path(next(m["path"] for m in tab.evaluate(CARDS_OF_COPIES) if m["decision"] == "discard"))
        assert tab.inner_text("#review-progress").endswith("· 1 discards waiting")
        tab.keyboard.press("A")
        tab.wait_for_selector("#apply-dialog[open]")
        tab.keyboard.press("Enter")
        tab.wait_for_function(IDLE, timeout=SLOW_MS)
        tab.wait_for_selector("#review-result:not([hidden])")
        assert not discarded.exists() and (move_to / discarded.name).exists()
        assert tab.inner_text("#review-progress").endswith("· 0 discards waiting")
        return discarded

    def undo(tab, discarded: Path) -> None:
        tab.keyboard.press("U")
        tab.wait_for_function(
            "() => document.getElementById('review-summary').textContent.startsWith('restored 1')", timeout=SLOW_MS
        )
        tab.wait_for_function(IDLE)
        assert tab.locator("#error").is_hidden(), tab.inner_text("#error")
        assert discarded.exists() and not (move_to / discarded.name).exists()
        assert tab.locator("#undo-button").is_hidden()

    with start_in_thread(lk.load_model(model), **options) as running:
        tab = open_tab(running.url, **DESKTOP)
        open_review(tab, running.url + url)
        discarded = apply(tab)
        assert tab.locator("#undo-button").is_visible()
        open_review(tab, running.url + url)  # a reload: the page has forgotten the apply, the model has not
        assert tab.locator("#undo-button").is_visible()
        undo(tab, discarded)
        assert httpx.get(running.api + "/decisions", timeout=60).json()["manifests"] == []
        discarded = apply(tab)

    with start_in_thread(lk.load_model(model), **options) as running:
        manifests = httpx.get(running.api + "/decisions", timeout=60).json()["manifests"]
        assert len(manifests) == 1 and Path(manifests[0]).parent == move_to
        tab = open_tab(running.url, **DESKTOP)
        open_review(tab, running.url + url)
        undo(tab, discarded)
        assert discarded in {Path(p) for p in lk.load_model(model).references["path"]}
        refused = httpx.post(running.api + "/undo", json={"manifest": manifests[0]}, timeout=60)
        assert refused.status_code == 404  # undone already


def test_the_match_view_served_again_on_the_same_port_with_another_set_shows_that_set(open_tab, browser, tmp_path):  # noqa: F811
    originals = tmp_path / "originals"
    originals.mkdir()
    chosen = SAMPLE_PHOTOS[1::8][:4]
    for photo in chosen:
        shutil.copyfile(photo, originals / photo.name)
    model = lk.create(str(originals), verbose=False)
    sets = []
    for number, photos in enumerate((chosen[:2], chosen[2:])):
        other = tmp_path / f"other-{number}"
        other.mkdir()
        for n, photo in enumerate(photos):  # the same names in both sets: only the files differ
            image = Image.open(photo).convert("RGB")
            image.resize((image.width // 2, image.height // 2)).save(other / f"copy-{n}.jpg", quality=90)
        other_model = lk.create(str(other), verbose=False)
        threshold = dedup.default_threshold(model.core)
        pairs = lk.match(model, other_model, threshold=threshold, metric=model.metric, one_to_one=True, verbose=False)
        sets.append(MatchedSet(other_model, pairs, threshold))

    context = browser.new_context(**DESKTOP)  # one browser, one cache, across both servers
    shown = []
    port = 0
    for matched in sets:
        with start_in_thread(model, port=port, matched=matched, thumbnail_dir=tmp_path / "thumbnails") as running:
            port = running.port
            tab = open_tab(running.url + "#view=match", context=context)
            tab.wait_for_function(
                "() => [...document.querySelectorAll('#match-rows .other img')].length === 2 &&"
                " [...document.querySelectorAll('#match-rows .other img')].every(i => i.complete && i.naturalWidth)"
            )
            rows = httpx.get(running.api + "/match", timeout=60).json()["items"]
            for row in rows:
                src = tab.get_attribute(f"#match-rows .other[data-other='{row['b']['index']}'] img", "src")
                # What the page has for that address, from the browser's cache if it holds it...
                held = tab.evaluate(
                    "async (src) => [...new Uint8Array(await (await fetch(src, {cache: 'force-cache'})).arrayBuffer())]",
                    src,
                )
                # ...is the thumbnail of this set's file.
                expected = httpx.get(running.api + f"/match/other/{row['b']['index']}/thumbnail", timeout=60).content
                assert bytes(held) == expected, row["b"]["path"]
                shown.append((src, row["b"]["path"]))
            tab.close()
    context.close()
    first, second = shown[:2], shown[2:]
    assert {Path(p).name for _, p in first} == {Path(p).name for _, p in second}  # the same names...
    assert not {src for src, _ in first} & {src for src, _ in second}  # ...at other addresses


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["1400x1000", "390x844"])
def test_nothing_runs_past_its_panel_and_the_controls_and_help_are_in_view(open_tab, photos, served, device):
    width, height = device["viewport"]["width"], device["viewport"]["height"]
    tab = open_tab(served.url, **device)
    tab.wait_for_selector("#grid .tile")
    shown = names_tell_files_apart(tab, "#grid")
    assert any("…" in text for text in shown), "the camera names are long enough to be shortened in a tile"
    tiles = tab.eval_on_selector_all(
        "#grid .tile", "tiles => tiles.map(t => [t.title, t.querySelector('.name').title])"
    )
    assert all(title == name_title and title.startswith(str(photos.folder)) for title, name_title in tiles)
    no_spills(tab, "header", "main")

    tab.click("#grid .tile >> nth=1")
    tab.wait_for_selector("#neighbours .tile")
    names_tell_files_apart(tab, "#neighbours")
    no_spills(tab, "#neighbours-panel")  # the whole path of the photo wraps inside the panel
    tab.click("#close-panel")

    tab.click("#tabs button[data-view='search']")
    assert tab.locator("#upload-input").bounding_box()["width"] <= 1  # the native button is not shown...
    button = tab.locator("#dropzone .button")  # ...but a button of the page's own style
    assert button.is_visible() and button.evaluate("b => getComputedStyle(b).borderTopStyle") == "solid"
    no_spills(tab, "main")

    open_review(tab, served.url + REVIEW)
    # Opened at the top: the controls above the first group. (What the threshold means is measured on copies of the
    # photos, ~40 s here: it arrives later, above the groups, and is not waited for.)
    assert tab.evaluate("() => scrollY") == 0
    for control in ("#dup-threshold", "#dup-tiers", "#dup-info", "#duplicates .tile.current"):
        assert tab.evaluate(IN_VIEW, control), control
    bar = tab.locator("#review-bar").bounding_box()
    assert bar["y"] + bar["height"] <= height
    if width < 600:
        assert bar["height"] <= 0.13 * height, bar  # compact on a phone
    cut = tab.eval_on_selector_all(
        "#review-bar button:not([hidden]), #duplicates .tile .distance, #duplicates .tile .facts",
        "elements => elements.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)",
    )
    assert cut == []  # labels wrap or are shortened, never cut
    names_tell_files_apart(tab, "#duplicates")
    no_spills(tab, "main", "#review-bar")

    # Help opened far down the groups shows where the person is, over the page; Escape closes it.
    press(tab, *["j"] * (GROUPS - 2))
    assert tab.evaluate(CURRENT)["group"] == GROUPS - 1 and tab.evaluate("() => scrollY") > 500
    press(tab, "?")
    assert tab.evaluate(IN_VIEW, "#review-help")
    no_spills(tab, "#review-help")
    press(tab, "Escape")
    assert tab.locator("#review-help").is_hidden() and tab.evaluate(CURRENT)["group"] == GROUPS - 1
    press(tab, "?")
    tab.click("#review-help-close")
    assert tab.locator("#review-help").is_hidden()

    tab.click("#tabs button[data-view='map']")
    tab.wait_for_function("() => lookalikeMap.points && lookalikeMap.points.length > 0")
    canvas = tab.locator("#map").bounding_box()
    lowest = max(tab.evaluate("() => lookalikeMap.points"), key=lambda p: p["py"] + p["px"])
    tab.mouse.move(canvas["x"] + lowest["px"], canvas["y"] + lowest["py"])
    tab.wait_for_selector("#map-tip:not([hidden])")
    tip = tab.locator("#map-tip").bounding_box()
    assert canvas["x"] <= tip["x"] and tip["x"] + tip["width"] <= canvas["x"] + canvas["width"] + 1
    assert canvas["y"] <= tip["y"] and tip["y"] + tip["height"] <= canvas["y"] + canvas["height"] + 1
    no_spills(tab, "main")
