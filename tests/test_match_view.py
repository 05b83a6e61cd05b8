"""The explorer's Match view: `lookalike serve MODEL --match SET` pairs each reference with at most one image of
another set, in a real server and a real browser; the unmatched of each side are listed too."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

import lookalike as lk
from server_fixtures import SAMPLE_PHOTOS, cli_server
from test_server_browser import TIMEOUT_MS, browser  # noqa: F401 - the browser fixture

ORIGINALS = SAMPLE_PHOTOS[::8][:10]  # ten photos of different classes
EDITED = ORIGINALS[:6]  # the other set holds half-size copies of six of them...
STRANGERS = SAMPLE_PHOTOS[4::8][:3]  # ...and three photos that are in neither


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    """(saved model of the ten originals, folder of the other set)."""
    root = tmp_path_factory.mktemp("match")
    (root / "originals").mkdir()
    (root / "other").mkdir()
    for photo in ORIGINALS:
        shutil.copyfile(photo, root / "originals" / photo.name)
    for photo in EDITED:
        image = Image.open(photo).convert("RGB")
        image.resize((image.width // 2, image.height // 2)).save(root / "other" / f"small-{photo.name}", quality=85)
    for photo in STRANGERS:
        shutil.copyfile(photo, root / "other" / photo.name)
    lk.create(str(root / "originals"), metric="cosine", verbose=False).save(root / "originals.lookalike")
    return root / "originals.lookalike", root / "other"


@pytest.fixture(scope="module")
def match_server(sets):
    model, other = sets
    with cli_server(model, "--match", str(other)) as (_, url):
        yield url


def test_each_reference_is_paired_with_its_copy_and_the_rest_are_listed_unmatched(match_server):
    assert match_server.endswith("#view=match")
    api = match_server.split("#")[0] + "api"
    assert httpx.get(api + "/summary").json()["has_match"] is True
    page = httpx.get(api + "/match").json()
    pairs = {Path(row["a"]["path"]).name: Path(row["b"]["path"]).name for row in page["items"]}
    assert pairs == {photo.name: f"small-{photo.name}" for photo in EDITED}
    assert (page["pairs"], page["unmatched_a"], page["unmatched_b"]) == (6, 4, 3)
    distances = [row["distance"] for row in page["items"]]
    assert distances == sorted(distances) and distances[-1] <= page["max_threshold"]
    alone_a = httpx.get(api + "/match", params={"show": "unmatched-a"}).json()["items"]
    assert sorted(Path(row["a"]["path"]).name for row in alone_a) == sorted(p.name for p in ORIGINALS[6:])
    alone_b = httpx.get(api + "/match", params={"show": "unmatched-b"}).json()["items"]
    assert sorted(Path(row["b"]["path"]).name for row in alone_b) == sorted(p.name for p in STRANGERS)
    # A smaller threshold keeps the closest pairs of the same pairing; the rest join the unmatched.
    tighter = httpx.get(api + "/match", params={"threshold": distances[2]}).json()
    assert tighter["pairs"] == 3 and tighter["unmatched_a"] == 7 and tighter["unmatched_b"] == 6
    assert httpx.get(api + "/match", params={"threshold": page["max_threshold"] + 1}).status_code == 400
    thumbnail = httpx.get(api + f"/match/other/{alone_b[0]['b']['index']}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"
    assert httpx.get(api + "/match/other/99/thumbnail").status_code == 404


def test_a_server_without_a_second_set_has_no_match(sets):
    model, _ = sets
    with cli_server(model) as (_, url):
        api = url.split("#")[0] + "api"
        assert httpx.get(api + "/summary").json()["has_match"] is False
        assert httpx.get(api + "/match").status_code == 404


def test_the_match_view_shows_the_pairs_and_the_unmatched(browser, match_server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(match_server)
        page.wait_for_selector("#match-rows .match-row")
        assert page.locator('#tabs button[data-view="match"]').is_visible()
        assert page.locator("#match-rows .match-row").count() == 6
        assert page.inner_text("#match-info").startswith("6 pairs at ")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#match-rows .other img')].every(i => i.complete && i.naturalWidth)"
        )
        page.select_option("#match-show", "unmatched-b")
        page.wait_for_function("() => document.querySelectorAll('#match-rows .match-row').length === 3")
        assert page.locator("#match-rows .tile:not(.other)").count() == 0  # no reference on those rows
        assert "show=unmatched-b" in page.url
        page.locator("#match-rows .match-row").first.wait_for()
    finally:
        context.close()
    assert errors == []
