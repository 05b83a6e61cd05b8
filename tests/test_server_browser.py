"""The web page in a real browser: Debian's chromium driven by Playwright, headless, against a real server.

Skipped locally when /usr/bin/chromium is missing (``bash scripts/install-system-deps.sh`` installs it);
a failure when CI is set, because CI installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import sync_playwright

import lookalike as lk
from conftest import _in_ci
from lookalike.server.collection import TSNE_ON_REQUEST
from lookalike.server.runner import start_in_thread
from server_fixtures import *  # noqa: F403 - the server fixtures
from server_fixtures import SAMPLE_PHOTOS

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"browser tests need {CHROMIUM} (bash scripts/install-system-deps.sh installs it)"
        if _in_ci():
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        # Playwright's own browser downloads cannot work offline: drive the system's chromium.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(server.url)
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots go: $LOOKALIKE_TEST_ARTIFACTS, else pytest's temporary folder (the path is printed)."""
    folder = os.environ.get("LOOKALIKE_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def loaded_thumbnails(page, selector: str) -> int:
    return page.eval_on_selector_all(
        f"{selector} img.thumb", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_grid_pages_and_lazy_loads_thumbnails(page, sample_model, artifacts):
    page.wait_for_selector("#grid .tile")
    assert page.locator("#grid .tile").count() == 60
    assert page.inner_text("#page-info") == "1–60 of 80"
    assert "80 references" in page.inner_text("#summary")
    page.wait_for_function("() => document.querySelectorAll('#grid img.thumb[src]').length > 0")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#grid img.thumb[src]')].some(i => i.complete && i.naturalWidth > 0)"
    )
    requested = page.locator("#grid img.thumb[src]").count()
    assert 0 < requested < 60  # only the thumbnails near the screen were fetched
    labels = page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => Number(t.dataset.index))")
    assert labels == list(range(60))
    shot = artifacts / "explorer-grid.png"
    page.screenshot(path=str(shot), full_page=False)
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000

    page.click("#next")
    page.wait_for_function("() => document.getElementById('page-info').textContent === '61–80 of 80'")
    assert page.locator("#grid .tile").count() == 20
    assert page.locator("#next").is_disabled()


def test_click_an_image_shows_its_neighbours(page, server, artifacts):
    page.wait_for_selector("#grid .tile")
    page.click("#grid .tile[data-index='9']")
    page.wait_for_selector("#neighbours .tile")
    expected = httpx.get(f"{server.api}/references/9/neighbours", params={"k": 10}).json()["neighbours"]
    shown = page.eval_on_selector_all("#neighbours .tile", "tiles => tiles.map(t => Number(t.dataset.index))")
    assert shown == [n["index"] for n in expected]
    first = page.inner_text("#neighbours .tile >> nth=0")
    assert f"{expected[0]['distance']:.3f}" in first and "#1" in first
    page.wait_for_function(
        "() => [...document.querySelectorAll('#neighbours img.thumb')].some(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(artifacts / "explorer-neighbours.png"))
    page.click("#close-panel")
    assert page.locator("#neighbours-panel").is_hidden()


def test_upload_a_photo_shows_results(page, sample_model, artifacts):
    page.click("#tabs button[data-view='search']")
    photo = SAMPLE_PHOTOS[33]
    page.set_input_files("#upload-input", str(photo))
    page.wait_for_selector("#results .tile")
    assert page.locator("#results .tile").count() == 10
    first = int(page.get_attribute("#results .tile >> nth=0", "data-index"))
    assert os.path.samefile(sample_model.references["path"][first], photo)
    assert "0.000" in page.inner_text("#results .tile >> nth=0")
    assert "JPEG" in page.inner_text("#upload-info")
    page.screenshot(path=str(artifacts / "explorer-upload.png"))


def test_a_bad_upload_shows_the_servers_reason(page, tmp_path):
    page.click("#tabs button[data-view='search']")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo at all\n" * 10)
    page.set_input_files("#upload-input", str(text))
    page.wait_for_selector("#error:not([hidden])")
    assert "415" in page.inner_text("#error") and "not an image" in page.inner_text("#error")


def test_duplicates_view(page, server, artifacts):
    page.click("#tabs button[data-view='duplicates']")
    page.wait_for_function("() => document.getElementById('dup-info').textContent.includes('groups at')")
    # The page asked for what the threshold means (a calibration, ~40 s of work on 2 cores): answers come slower meanwhile.
    threshold = httpx.get(f"{server.api}/duplicates", timeout=60).json()["nearest"]["p5"]  # loose enough to group a few
    expected = httpx.get(f"{server.api}/duplicates", params={"threshold": threshold}, timeout=60).json()
    page.fill("#dup-threshold", repr(threshold))
    page.click("#dup-form button")
    page.wait_for_function(
        f"() => document.getElementById('dup-info').textContent.startsWith('{expected['total']} groups')"
    )
    assert page.locator("#duplicates .group").count() == min(expected["total"], 20) > 0
    first = page.eval_on_selector_all(
        "#duplicates .group >> nth=0 >> .tile", "tiles => tiles.map(t => Number(t.dataset.index))"
    )
    assert first == [m["index"] for m in expected["groups"][0]["members"]]
    assert page.locator("#duplicates .group >> nth=0 >> .tile.keeper").count() == 1
    tiers = page.eval_on_selector_all("#duplicates .group >> nth=0 >> .tile", "tiles => tiles.map(t => t.dataset.tier)")
    assert tiers == [m["tier"] for m in expected["groups"][0]["members"]]
    # What the threshold means here, measured on copies of the collection's own photos, as /api/calibration says.
    meaning = httpx.get(f"{server.api}/calibration", params={"threshold": threshold}, timeout=120).json()["summary"]
    page.wait_for_function(f"() => document.getElementById('dup-calibration').textContent.includes({meaning!r})")
    page.screenshot(path=str(artifacts / "explorer-duplicates.png"))
    page.fill("#dup-threshold", "0")
    page.click("#dup-form button")
    page.wait_for_function("() => document.getElementById('dup-info').textContent.startsWith('0 groups')")
    assert page.locator("#duplicates .group").count() == 0


def test_map_shows_the_image_under_the_pointer(page, artifacts):
    page.click("#tabs button[data-view='map']")
    page.wait_for_function("() => lookalikeMap.points && lookalikeMap.points.length === 80")
    point = page.evaluate("() => lookalikeMap.points[0]")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + point["px"], box["y"] + point["py"])
    page.wait_for_selector("#map-tip:not([hidden])")
    page.wait_for_function("() => document.querySelector('#map-tip img').naturalWidth > 0")
    index = page.get_attribute("#map-tip img", "data-index")
    assert index == str(page.evaluate("() => lookalikeMap.data.index[0]"))
    path = page.evaluate("() => lookalikeMap.data.path[0]")  # the file under the pointer, not a row number
    assert page.inner_text("#map-tip span") == path.rsplit("/", 1)[-1] and path.endswith(".jpg")
    assert page.get_attribute("#map-tip span", "title") == path
    page.screenshot(path=str(artifacts / "explorer-map.png"))
    page.mouse.click(box["x"] + point["px"], box["y"] + point["py"])
    page.wait_for_selector("#neighbours .tile")


def open_map(page, url: str | None = None):
    """The map view of ``page`` (at ``url`` if given), once its points are drawn; the canvas' box."""
    if url is None:
        page.click("#tabs button[data-view='map']")
    else:
        page.goto(url)
    page.wait_for_function("() => lookalikeMap.points && lookalikeMap.points.length > 0")
    return page.locator("#map").bounding_box()


def wait_for_route(page, **values: str) -> None:
    """Until the URL's fragment holds these values (the map writes it a moment after the view settles)."""
    checks = " && ".join(f"p.get({key!r}) === {value!r}" for key, value in values.items())
    page.wait_for_function(f"() => {{ const p = new URLSearchParams(location.hash.slice(1)); return {checks}; }}")


def test_map_zoomed_in_draws_thumbnails_of_the_points_in_view(page, artifacts):
    box = open_map(page)
    for _ in range(3):  # out to the smallest zoom: dots only
        page.click("#map-zoom-out")
    page.wait_for_function("() => lookalikeMap.view.zoom === 0.25 && lookalikeMap.thumbs.length === 0")
    page.screenshot(path=str(artifacts / "explorer-map-dots.png"))
    target = page.evaluate("() => lookalikeMap.points[0]")
    page.mouse.move(box["x"] + target["px"], box["y"] + target["py"])
    for _ in range(12):  # the wheel zooms about the pointer: in on that point
        page.mouse.wheel(0, -250)
    page.wait_for_function("() => lookalikeMap.view.zoom > 20")
    page.wait_for_function("() => lookalikeMap.thumbs.length > 0")
    state = page.evaluate(
        "() => ({thumbs: lookalikeMap.thumbs, points: lookalikeMap.points.length, index: lookalikeMap.data.index})"
    )
    assert 0 < len(state["thumbs"]) <= state["points"] < 80  # only points in view, and not all of them are
    for thumb in state["thumbs"]:
        assert thumb["size"] >= 24
        assert -thumb["size"] <= thumb["px"] <= box["width"] + thumb["size"]
        assert -thumb["size"] <= thumb["py"] <= box["height"] + thumb["size"]
    assert target["i"] in [t["i"] for t in state["thumbs"]]  # the point zoomed on stayed under the pointer
    page.screenshot(path=str(artifacts / "explorer-map-thumbnails.png"))


def test_map_lasso_lists_the_references_inside(page, artifacts):
    box = open_map(page)
    points = page.evaluate("() => lookalikeMap.points")
    left, top, right, bottom = box["width"] * 0.3, box["height"] * 0.2, box["width"] * 0.7, box["height"] * 0.8
    expected = sorted(p["i"] for p in points if left < p["px"] < right and top < p["py"] < bottom)
    assert 0 < len(expected) < 80
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + left, box["y"] + top)
    page.mouse.down()
    for x, y in [(right, top), (right, bottom), (left, bottom), (left, top + 1)]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_selector("#map-selection .tile")
    index = page.evaluate("() => lookalikeMap.data.index")
    shown = page.eval_on_selector_all("#map-selection .tile", "tiles => tiles.map(t => Number(t.dataset.index))")
    assert sorted(shown) == sorted(index[i] for i in expected)
    paths = page.evaluate("() => lookalikeMap.data.path")
    names = page.eval_on_selector_all("#map-selection .tile .name", "c => c.map(e => [e.dataset.name, e.title])")
    assert sorted(names) == sorted([paths[i].rsplit("/", 1)[-1], paths[i]] for i in expected)
    assert page.inner_text("#map-selection-info") == f"{len(expected)} references selected"
    page.wait_for_function("() => document.querySelector('#map-selection img.thumb').naturalWidth > 0")
    page.screenshot(path=str(artifacts / "explorer-map-lasso.png"), full_page=True)
    page.click("#map-selection .tile >> nth=0")
    page.wait_for_selector("#neighbours .tile")
    # The panel names the version of the file it shows, so that a position holding another file later is refused (409).
    address = page.get_attribute("#neighbours-query img", "data-src")
    assert address.split("?")[0] == f"/api/references/{shown[0]}/thumbnail" and "?v=" in address
    page.click("#close-panel")
    page.click("#map-clear")
    assert page.locator("#map-selection .tile").count() == 0 and page.locator("#map-selection-bar").is_hidden()


def test_map_view_is_shared_by_its_url(page, browser):
    box = open_map(page)
    page.select_option("#map-color", "folder")
    page.wait_for_function("() => lookalikeMap.data.color.column === 'folder'")
    page.click("#map-zoom-in")
    page.click("#map-zoom-in")
    page.mouse.move(box["x"] + 300, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 420, box["y"] + 260, steps=5)  # a drag pans
    page.mouse.up()
    assert page.locator("#neighbours-panel").is_hidden()  # a drag is not a click
    view = page.evaluate("() => lookalikeMap.view")
    assert view["zoom"] == pytest.approx(1.6**2)
    # The URL is written 150 ms after the view last moves: wait for the pan's place too, not only the zoom (the
    # zoom's own write, before the drag, matched that alone and was shared without the pan now and then).
    mx, my = page.evaluate("() => ['x', 'y'].map(k => String(Number(lookalikeMap.view[k].toPrecision(6))))")
    wait_for_route(page, view="map", color="folder", mz=f"{1.6**2:.4g}", mx=mx, my=my)
    shared = page.url
    where = page.evaluate("() => lookalikeMap.points.find(p => p.i === 5)")

    other = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    other.set_default_timeout(TIMEOUT_MS)
    open_map(other, shared)
    assert other.evaluate("() => lookalikeMap.data.color.column") == "folder"
    assert other.input_value("#map-color") == "folder"
    restored = other.evaluate("() => lookalikeMap.view")
    for key in ("x", "y", "zoom"):
        assert restored[key] == pytest.approx(view[key], rel=1e-4, abs=1e-4)
    again = other.evaluate("() => lookalikeMap.points.find(p => p.i === 5)")
    assert again["px"] == pytest.approx(where["px"], abs=0.5) and again["py"] == pytest.approx(where["py"], abs=0.5)
    other.context.close()


def test_map_colour_select_changes_the_colours(page, sample_classes):
    open_map(page)
    legend = page.eval_on_selector_all("#map-legend .legend-item", "items => items.map(i => i.dataset.category)")
    assert legend == [f"cluster {k}" for k in range(1, 7)]
    by_cluster = page.evaluate("() => lookalikeMap.colors")
    page.select_option("#map-color", "folder")
    page.wait_for_function("() => lookalikeMap.data.color.column === 'folder'")
    legend = page.eval_on_selector_all("#map-legend .legend-item", "items => items.map(i => i.dataset.category)")
    assert legend == sorted(set(sample_classes))
    by_folder = page.evaluate("() => lookalikeMap.colors")
    assert by_folder != by_cluster
    colour_of = {}
    for index, css in zip(page.evaluate("() => lookalikeMap.data.index"), by_folder, strict=True):
        assert colour_of.setdefault(sample_classes[index], css) == css  # one colour per folder
    assert len(set(colour_of.values())) == 10
    # What is drawn: zoomed out, each dot's middle pixel is its point's colour.
    for _ in range(3):
        page.click("#map-zoom-out")
    page.wait_for_function("() => lookalikeMap.view.zoom === 0.25 && lookalikeMap.thumbs.length === 0")
    page.wait_for_timeout(100)  # the frame after the last zoom
    mismatches = page.evaluate(
        """() => {
        const ctx = document.getElementById('map').getContext('2d');
        const probe = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
        const ratio = window.devicePixelRatio || 1;
        const rgb = (css) => { probe.fillStyle = css; probe.fillRect(0, 0, 1, 1); return [...probe.getImageData(0, 0, 1, 1).data.slice(0, 3)]; };
        const lone = lookalikeMap.points.filter(p => lookalikeMap.points.every(q => q === p || Math.hypot(q.px - p.px, q.py - p.py) > 6));
        return [lone.length, lone.filter(p => {
          const got = [...ctx.getImageData(Math.round(p.px * ratio), Math.round(p.py * ratio), 1, 1).data.slice(0, 3)];
          const want = rgb(lookalikeMap.colors[p.i]);
          return got.some((v, k) => Math.abs(v - want[k]) > 8);
        }).length];
    }"""
    )
    assert mismatches[0] > 5 and mismatches[1] == 0, mismatches
    page.select_option("#map-color", "width")
    page.wait_for_function("() => lookalikeMap.data.color.kind === 'number'")
    assert page.locator("#map-legend .swatch.ramp").count() == 1


def test_map_of_many_points_draws_each_in_its_colour(browser, tmp_path, artifacts):
    # Above 20,000 references the explorer shows PCA at once (t-SNE waits for `lookalike map`), and its dots are
    # written into the canvas' pixels rather than filled as paths: each visible one must still be its colour.
    vectors = np.random.default_rng(0).normal(size=(TSNE_ON_REQUEST + 1, 8)).astype(np.float32)
    with start_in_thread(lk.create(vectors, model=None, verbose=False), thumbnail_dir=tmp_path) as running:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        open_map(tab, running.url + "#view=map")
        assert tab.evaluate("() => [lookalikeMap.data.method, lookalikeMap.points.length]") == ["pca", 20_001]
        assert "lookalike map MODEL" in tab.inner_text("#map-info")
        tab.wait_for_timeout(100)
        checked, wrong = tab.evaluate(
            """() => {
            const canvas = document.getElementById('map');
            const [cw, ch] = [canvas.width, canvas.height];
            const pixels = canvas.getContext('2d').getImageData(0, 0, cw, ch).data;
            const probe = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
            const rgb = (css) => { probe.fillStyle = css; probe.fillRect(0, 0, 1, 1); return probe.getImageData(0, 0, 1, 1).data; };
            const centre = (p) => [Math.round(p.px), Math.round(p.py)];
            const covered = new Uint16Array(cw * ch);  // how many dots (3 x 3 squares at this size) cover each pixel
            for (const p of lookalikeMap.points) {
              const [x, y] = centre(p);
              for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) {
                if (x + dx >= 0 && x + dx < cw && y + dy >= 0 && y + dy < ch) covered[(y + dy) * cw + x + dx]++;
              }
            }
            let checked = 0, wrong = 0;
            for (const p of lookalikeMap.points) {
              const [x, y] = centre(p);
              if (x < 0 || x >= cw || y < 0 || y >= ch || covered[y * cw + x] !== 1) continue;
              const want = rgb(lookalikeMap.colors[p.i]);
              checked++;
              if ([0, 1, 2].some(k => Math.abs(pixels[4 * (y * cw + x) + k] - want[k]) > 8)) wrong++;
            }
            return [checked, wrong];
        }"""
        )
        assert checked > 1000 and wrong == 0, (checked, wrong)
        tab.screenshot(path=str(artifacts / "explorer-map-many.png"))
        context.close()


def test_phone_width(browser, server, artifacts):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(server.url)
    tab.wait_for_selector("#grid .tile")
    columns = tab.evaluate(
        "() => getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length"
    )
    assert columns >= 3
    assert tab.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"
    )  # nothing wider than the phone
    tab.click("#grid .tile[data-index='2']")
    tab.wait_for_selector("#neighbours .tile")
    panel = tab.locator("#neighbours-panel").bounding_box()
    assert panel["width"] <= 390
    tab.screenshot(path=str(artifacts / "explorer-phone.png"))
    context.close()


def test_page_works_with_a_token(browser, saved_model, tmp_path):
    with start_in_thread(lk.load_model(saved_model), token="t0ken", thumbnail_dir=tmp_path) as running:
        context = browser.new_context()
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(running.url)
        tab.wait_for_selector("#grid .tile")
        assert "token" not in tab.url  # taken out of the address bar
        tab.wait_for_function(
            "() => [...document.querySelectorAll('#grid img.thumb')].some(i => i.src.startsWith('blob:') && i.naturalWidth > 0)"
        )
        tab.click("#tabs button[data-view='map']")  # the map's thumbnails are fetched with the token too
        tab.wait_for_function("() => lookalikeMap.thumbs && lookalikeMap.thumbs.length > 0")
        context.close()
