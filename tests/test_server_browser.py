"""The web page in a real browser: Debian's chromium driven by Playwright, headless, against a real server.

Skipped locally when /usr/bin/chromium is missing (``bash scripts/install-system-deps.sh`` installs it);
a failure when CI is set, because CI installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

import lookalike as lk
from conftest import _in_ci
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
    threshold = httpx.get(f"{server.api}/duplicates").json()["nearest"]["p5"]  # loose enough to group a few
    expected = httpx.get(f"{server.api}/duplicates", params={"threshold": threshold}).json()
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
    page.screenshot(path=str(artifacts / "explorer-map.png"))
    page.mouse.click(box["x"] + point["px"], box["y"] + point["py"])
    page.wait_for_selector("#neighbours .tile")


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
        context.close()
