"""Reviewing duplicates in the explorer with the keyboard alone: a real browser, a real server, real photos.

120 groups of copies are made from the 80 vendored photos (and 40 generated pictures, so that there are more
originals than photos): exact copies, half-size and quality-60 re-saves, PNG re-saves; the first group
also holds a look-alike (the photo with a large part of it changed), which is never suggested for discard. A
person reviews 100 groups with keys only, applies the discards, restarts the server, re-indexes, and undoes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image, ImageDraw

import lookalike as lk
from lookalike.dedup.decisions import read_saved
from lookalike.server.runner import start_in_thread
from lookalike.server.thumbnails import file_version
from server_fixtures import SAMPLE_PHOTOS
from test_dedup import digest
from test_server_browser import TIMEOUT_MS, browser  # noqa: F401 - the browser fixture

#: Links between copies are at most 0.37 here and between distinct originals at least 0.6 (measured on this set
#: with the default network): 0.5 keeps both well clear, whatever the model's default threshold becomes.
THRESHOLD = 0.5
GROUPS = 120
REVIEWED = 100

IDLE = "() => document.getElementById('view-duplicates').dataset.busy === 'false'"
CURRENT = """() => {
  const card = document.querySelector('#duplicates .group.current');
  if (!card) return null;
  return {
    group: Number(card.dataset.group),
    members: [...card.querySelectorAll('.tile')].map((t) => ({
      index: Number(t.dataset.index), path: t.title.split('\\n')[0], keeper: t.classList.contains('keeper'),
      decision: t.dataset.decision, current: t.classList.contains('current'), action: t.dataset.action,
    })),
  };
}"""
CARDS = """() => [...document.querySelectorAll('#duplicates .group')].map((card) => ({
  group: Number(card.dataset.group),
  members: [...card.querySelectorAll('.tile')].map((t) => ({path: t.title.split('\\n')[0], decision: t.dataset.decision})),
}))"""


def _perspective(target: tuple, source: tuple) -> list[float]:
    """PIL's 8 perspective coefficients taking each point of ``target`` to the matching point of ``source``."""
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows), np.array(source, dtype=float).ravel()).tolist()


def make_groups(root: Path) -> Path:
    """GROUPS folders ``NNN/``, each an original ``photo.jpg`` and copies of it: 30 groups of 4 images, 90 of 2; the
    fourth also holds ``lookalike.jpg``, the photo as if seen from a little to the side (a look-alike, never a copy)."""
    root.mkdir(parents=True)
    originals = [Image.open(p).convert("RGB") for p in SAMPLE_PHOTOS]
    rng = np.random.default_rng(7)
    for _ in range(40):  # pictures of their own: anything made from a photo would be an edited copy of it
        shapes = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).resize((400, 400))
        draw = ImageDraw.Draw(shapes)
        for _ in range(12):
            x, y = rng.integers(0, 400, 2)
            draw.ellipse(
                (x, y, x + rng.integers(20, 160), y + rng.integers(20, 160)), fill=tuple(rng.integers(0, 255, 3))
            )
        originals.append(shapes)
    for n, image in enumerate(originals):
        folder = root / f"{n:03d}"
        folder.mkdir()
        if n < len(SAMPLE_PHOTOS):
            shutil.copyfile(SAMPLE_PHOTOS[n], folder / "photo.jpg")
        else:
            image.save(folder / "photo.jpg", quality=92)
        kind = n % 4  # 0: an exact copy; 1: half size; 2: re-saved at quality 60; 3: exact, PNG and half size
        if kind in (0, 3):
            shutil.copyfile(folder / "photo.jpg", folder / "photo (copy).jpg")
        if kind in (1, 3):
            half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
            half.save(folder / "small.jpg", quality=90)
        if kind == 2:
            Image.open(folder / "photo.jpg").save(folder / "photo-q60.jpg", quality=60)
        if kind == 3:
            Image.open(folder / "photo.jpg").save(folder / "photo.png")
    # Another capture of the same thing: seen from a little to the side (a perspective no single turn undoes).
    w, h = originals[3].size
    warp = _perspective(((0, 0), (w, 0), (w, h), (0, h)), ((w * 0.12, h * 0.06), (w, 0), (w * 0.94, h * 0.97), (0, h)))
    changed = originals[3].transform(
        (w, h), Image.Transform.PERSPECTIVE, warp, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)
    )
    changed.save(root / "003" / "lookalike.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> SimpleNamespace:
    """The photo folder, its model saved twice (one to review, one left without decisions), the discard folder."""
    root = tmp_path_factory.mktemp("review")
    photos = make_groups(root / "photos")
    model = lk.create(str(photos), verbose=False)
    model.save(root / "photos.lookalike")
    model.save(root / "fresh.lookalike")
    return SimpleNamespace(
        photos=photos,
        path=root / "photos.lookalike",
        fresh=root / "fresh.lookalike",
        move_to=root / "discarded",
        thumbnails=root / "thumbnails",
        original=digest(photos),
    )


@pytest.fixture
def open_tab(browser):  # noqa: F811 - the fixture imported above
    """A function opening a URL in a new tab that fails the test on any JavaScript error."""
    contexts, errors = [], []

    def open_url(url: str, **options):
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
        contexts.append(context)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(url)
        tab.wait_for_selector("#duplicates .group.current")
        tab.wait_for_function(IDLE)
        return tab

    yield open_url
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def press(tab, *keys: str):
    """Press keys (typed ahead: the page acts on them in order) and wait until it has acted on all of them."""
    for key in keys:
        tab.keyboard.press(key)
    tab.wait_for_function(IDLE)
    assert tab.locator("#error").is_hidden(), tab.inner_text("#error")


def saved_decisions(path: Path) -> tuple[dict[str, tuple], set[frozenset]]:
    """The pending keep/discard decisions saved with the model (path -> (kind, keeper)) and its not-duplicate pairs."""
    marks, apart = {}, set()
    for record in read_saved(path).records:
        if record["kind"] == "not-duplicate":
            apart.add(frozenset(record["paths"]))
        elif "moved_to" not in record:
            marks[record["paths"][0]] = (record["kind"], record["paths"][1] if record["kind"] == "discard" else None)
    return marks, apart


def shows_its_own_file(tab) -> None:
    """Every thumbnail of the current card loads, from an address naming the version of the file of its tile."""
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#duplicates .group.current img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    sources = tab.eval_on_selector_all(
        "#duplicates .group.current .tile",
        "tiles => tiles.map(t => [t.title.split('\\n')[0], t.querySelector('img').src])",
    )
    for path, source in sources:
        address = urlsplit(source)
        assert address.path.endswith("/thumbnail") and parse_qs(address.query) == {"v": [file_version(path)]}, source


def honoured(model: lk.ImageSimilarityModel, keeps: set[str], apart: set[frozenset], gone: set[str]) -> list[list]:
    """Check that ``model.find_duplicates`` follows the decisions; its groups (paths, keeper first)."""
    dups = model.find_duplicates(threshold=THRESHOLD)
    groups = [g["path"].tolist() for _, g in dups.groupby("group")]
    assert not set(dups["path"]) & gone
    for group in groups:
        assert not any(pair <= set(group) for pair in apart)
        if keeps & set(group):
            assert group[0] in keeps
    return groups


def test_a_shared_url_opens_its_group_and_keys_typed_in_the_form_are_not_review_keys(open_tab, collection):
    model = lk.load_model(collection.fresh)
    # Served without its folder and without a discard folder: decisions live in memory, nothing can move.
    with start_in_thread(model, thumbnail_dir=collection.thumbnails) as running:
        tab = open_tab(f"{running.url}#view=duplicates&threshold={THRESHOLD}&group=45&tiers=exact,same-pixels")
        assert tab.evaluate(CURRENT)["group"] == 45
        assert tab.locator("#duplicates .group").first.get_attribute("data-group") == "41"  # its page
        copies = model.find_duplicates(threshold=THRESHOLD, tiers=["exact", "same-pixels"])["group"].nunique()
        assert copies == GROUPS // 2  # the exact copies of kinds 0 and 3
        assert tab.inner_text("#review-progress").startswith(f"Group 45 of {copies} · 0 decisions")
        assert tab.input_value("#dup-tiers") == "exact,same-pixels"
        assert "showing exact and same pixels" in tab.inner_text("#dup-info")
        tiers = tab.eval_on_selector_all("#duplicates .tile", "tiles => tiles.map(t => t.dataset.tier)")
        assert set(tiers) <= {"exact", "same-pixels"} and tiers
        assert tab.locator("#review-saved").is_visible()  # decisions last only while the server runs
        assert tab.locator("#apply-button").is_disabled()
        assert "lookalike serve --move-to" in tab.inner_text("#apply-where")

        press(tab, "j", "ArrowDown", "k")
        assert tab.evaluate(CURRENT)["group"] == 46
        assert "group=46" in tab.url and f"threshold={THRESHOLD}" in tab.url
        # Going back past the first group of a page turns to the previous one, at its last group.
        press(tab, *["k"] * 6)
        assert tab.evaluate(CURRENT)["group"] == 40
        assert tab.locator("#duplicates .group").first.get_attribute("data-group") == "21"

        tab.focus("#dup-threshold")
        tab.keyboard.press("a")
        tab.keyboard.press("d")
        tab.wait_for_function(IDLE)
        assert tab.evaluate(CURRENT)["group"] == 40 and len(model.decisions) == 0

        tab.locator("#duplicates .group.current").focus()
        press(tab, "A")  # nothing to apply, and no folder to apply to: no dialog
        assert not tab.locator("#apply-dialog").is_visible()
        size = len(tab.evaluate(CURRENT)["members"])
        press(tab, "a")
        assert tab.evaluate(CURRENT)["group"] == 41 and len(model.decisions) == size  # kept in memory


def test_a_phone_reviews_with_taps(open_tab, collection):
    model = lk.load_model(collection.fresh)
    with start_in_thread(model, thumbnail_dir=collection.thumbnails) as running:
        phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
        tab = open_tab(f"{running.url}#view=duplicates&threshold={THRESHOLD}", **phone)
        assert tab.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        bar = tab.locator("#review-bar").bounding_box()
        assert bar["y"] + bar["height"] <= 844  # the bar stays on screen below the cards
        first = tab.evaluate(CURRENT)
        tab.locator("#duplicates .group.current .tile").nth(1).tap()
        tab.wait_for_function(IDLE)
        assert tab.evaluate(CURRENT)["members"][1]["current"]
        tab.tap("#review-bar [data-key='s']")
        tab.wait_for_function(IDLE)
        chosen = first["members"][1]["path"]
        regrouped = tab.evaluate(CURRENT)["members"]
        assert regrouped[0]["path"] == chosen
        tab.tap("#review-bar [data-key='a']")
        tab.wait_for_function(IDLE)
        assert tab.evaluate(CURRENT)["group"] == first["group"] + 1
        # Copies of the new keeper are discarded; the look-alike (another capture) is left undecided.
        assert {m["path"]: model.decisions.state_of(m["path"]) for m in regrouped} == {
            m["path"]: "keep" if m["path"] == chosen else "discard" if m["action"] == "discard" else None
            for m in regrouped
        }
        assert any(m["action"] == "none" for m in regrouped)


def test_a_person_reviews_100_groups_with_the_keyboard_alone(open_tab, collection):
    path, photos, move_to = collection.path, collection.photos, collection.move_to
    marks: dict[str, tuple] = {}  # what the keys said: path -> ("keep", None) or ("discard", its keeper)
    apart: set[frozenset] = set()
    chosen_keepers: list[str] = []
    server = start_in_thread(lk.load_model(path), model_path=path, move_to=move_to, thumbnail_dir=collection.thumbnails)
    try:
        tab = open_tab(f"{server.url}#view=duplicates&threshold={THRESHOLD}")
        assert tab.inner_text("#review-progress") == f"Group 1 of {GROUPS} · 0 decisions · 0 discards waiting"
        assert tab.locator("#review-saved").is_hidden()
        assert str(move_to) in tab.inner_text("#apply-where")
        assert "keeper: the original" in tab.inner_text("#duplicates .group.current")  # of identical copies
        facts = tab.inner_text("#duplicates .group.current .tile.keeper .facts")
        assert "×" in facts and "KB" in facts

        # Help, and the neighbours panel: Enter opens it, Escape (the panel's own key) closes it.
        press(tab, "?")
        assert tab.locator("#review-help").is_visible()
        press(tab, "?")
        assert tab.locator("#review-help").is_hidden()
        press(tab, "Enter")
        tab.wait_for_selector("#neighbours .tile")
        tab.keyboard.press("Escape")
        assert tab.locator("#neighbours-panel").is_hidden()

        def accept(state):
            keeper = next(m for m in state["members"] if m["keeper"])
            marks[keeper["path"]] = ("keep", None)
            for member in state["members"]:
                if member is not keeper and member["action"] == "discard":  # copies of the keeper, not look-alikes
                    marks[member["path"]] = ("discard", keeper["path"])
            press(tab, "a")

        first = tab.evaluate(CURRENT)["members"]
        looks = [m for m in first if m["path"].endswith("lookalike.jpg")]
        assert len(looks) == 1 and looks[0]["action"] == "none" and looks[0]["decision"] == "none"

        reviewed = splits = 0
        while reviewed < REVIEWED:
            state = tab.evaluate(CURRENT)
            members = state["members"]
            keeper = members[0]
            assert keeper["keeper"] and members[0]["current"] and not any(m["keeper"] for m in members[1:])
            step = reviewed % 10
            if step == 3 and len(members) == 2:
                # Not a duplicate: the pair is split, the group dissolves and the next one takes its place.
                apart.add(frozenset((members[1]["path"], keeper["path"])))
                press(tab, "ArrowRight", "x" if reviewed % 20 == 3 else "n")
                after = tab.evaluate(CURRENT)
                assert keeper["path"] not in [m["path"] for m in after["members"]]
                assert after["group"] == state["group"]
                splits += 1
            elif step == 6:
                # Another keeper: s on the second image, then accept the group around it.
                press(tab, "ArrowRight", "s")
                chosen = members[1]["path"]
                chosen_keepers.append(chosen)
                marks[chosen] = ("keep", None)
                after = tab.evaluate(CURRENT)
                assert after["group"] == state["group"] and after["members"][0]["path"] == chosen
                assert after["members"][0]["decision"] == "keep" and after["members"][0]["current"]
                assert {m["path"] for m in after["members"]} == {m["path"] for m in members}
                accept(after)
            elif step == 9:
                # Accept, come back, clear the second image's discard, and go on.
                accept(state)
                press(tab, "k", "ArrowRight", "u")
                del marks[members[1]["path"]]
                back = tab.evaluate(CURRENT)
                assert back["group"] == state["group"] and back["members"][1]["decision"] == "none"
                assert back["members"][0]["decision"] == "keep"
                press(tab, "j")
            elif step == 8 and reviewed % 20 == 18:
                # Discard one image only, and leave the rest undecided.
                press(tab, "ArrowRight", "d", "ArrowDown")
                marks[members[1]["path"]] = ("discard", keeper["path"])
            else:
                accept(state)
            reviewed += 1
            split = frozenset((members[-1]["path"], keeper["path"])) in apart
            assert tab.evaluate(CURRENT)["group"] == state["group"] + (0 if split else 1)  # the next group
        assert splits == 7

        recorded, recorded_apart = saved_decisions(path)
        assert recorded == marks
        assert recorded_apart == apart
        discards = sorted(p for p, (kind, _) in marks.items() if kind == "discard")
        decisions = len(marks) + len(apart)
        assert tab.inner_text("#review-progress").endswith(f"{decisions} decisions · {len(discards)} discards waiting")
    finally:
        server.stop()

    # A restart: a new server on the model read back shows every decision on its cards; split pairs stay split.
    server = start_in_thread(lk.load_model(path), model_path=path, move_to=move_to, thumbnail_dir=collection.thumbnails)
    try:
        tab = open_tab(f"{server.url}#view=duplicates&threshold={THRESHOLD}")
        total = GROUPS - len(apart)
        assert tab.inner_text("#review-progress").startswith(f"Group 1 of {total} · {decisions} decisions")
        shown = {}
        while True:
            for card in tab.evaluate(CARDS):
                shown[card["group"]] = card["members"]
            if len(shown) == total:
                break
            press(tab, *["j"] * 20)  # typed ahead: the last one turns the page
        for members in shown.values():
            paths = [m["path"] for m in members]
            assert not any(pair <= set(paths) for pair in apart)
            for member in members:
                expected = marks.get(member["path"], ("none",))[0]
                assert member["decision"] == expected, member
        for chosen in chosen_keepers:
            assert any(members[0]["path"] == chosen for members in shown.values())

        # Apply with the keyboard: Escape cancels, Enter confirms.
        tab.keyboard.press("A")
        tab.wait_for_selector("#apply-dialog[open]")
        text = tab.inner_text("#apply-dialog")
        assert f"Move {len(discards)} discarded files" in text and str(move_to) in text
        tab.keyboard.press("Escape")
        tab.wait_for_function(IDLE)
        assert not move_to.exists() and digest(photos) == collection.original
        tab.keyboard.press("A")
        tab.wait_for_selector("#apply-dialog[open]")
        tab.keyboard.press("Enter")
        tab.wait_for_function(IDLE)
        tab.wait_for_selector("#review-result:not([hidden])")
        assert tab.inner_text("#review-summary").startswith(f"moved {len(discards)} files, skipped 0")
        assert tab.locator("#undo-button").is_visible()

        moved = {k: v for k, v in digest(move_to).items() if not k.startswith("lookalike-moves-")}
        relative = {str(Path(p).relative_to(photos)) for p in discards}
        assert moved == {r: collection.original[r] for r in relative}  # same places, same bytes
        assert digest(photos) == {r: h for r, h in collection.original.items() if r not in relative}
        assert tab.inner_text("#review-progress").endswith(f"{decisions} decisions · 0 discards waiting")
        # Positions changed: the other views reload, and no thumbnail is another file's image kept by the browser.
        remaining = len(collection.original) - len(discards)
        tab.wait_for_function(f"() => document.getElementById('summary').textContent.startsWith('{remaining} ')")
        shows_its_own_file(tab)

        # A re-index of the folder saved to the same place: the decisions are still honoured.
        keeps = {p for p, (kind, _) in marks.items() if kind == "keep"}
        lk.create(str(photos), verbose=False).save(path)
        assert saved_decisions(path) == ({p: m for p, m in marks.items() if m[0] == "keep"}, apart)
        honoured(lk.load_model(path), keeps, apart, gone=set(discards))

        # Undo, with the keyboard: every file back, byte for byte, and a reference of the model again.
        press(tab, "U")
        tab.wait_for_function("() => document.getElementById('review-summary').textContent.startsWith('restored')")
        assert tab.inner_text("#review-summary").startswith(f"restored {len(discards)} files, could not restore 0")
        assert tab.locator("#undo-button").is_hidden()
        assert digest(photos) == collection.original
        assert not {k for k in digest(move_to) if not k.startswith("lookalike-moves-")}
        restored = lk.load_model(path)
        assert {os.fspath(p) for p in restored.references["path"]} >= set(discards)
        assert len(restored.labels) == len(collection.original)
        # Every copy is back in its group, where the keepers chosen with s are still the keepers.
        groups = honoured(restored, keeps, apart, gone=set())
        for chosen in chosen_keepers:
            assert any(g[0] == chosen for g in groups), chosen
        assert tab.inner_text("#review-progress").startswith(f"Group 1 of {total} ·")
        shows_its_own_file(tab)
    finally:
        server.stop()
